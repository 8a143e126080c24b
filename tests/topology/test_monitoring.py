"""The Prometheus rules rendered from the topology: valid for promtool, and each alert fires
on the series that should fire it and stays quiet on those that should not (`promtool test
rules`, Debian's prometheus package)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from topology import DEFAULT
from topology.kube import ClusterSettings, demo_release, release_scope
from topology.monitoring import (
    LatencyThresholds,
    Scope,
    dashboard,
    dashboard_queries,
    rule_groups,
    rules_file,
    scrape_config,
)

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None,
                                    reason="promtool missing: scripts/system-deps.sh prometheus")
SCOPE = release_scope(*demo_release(DEFAULT, ClusterSettings()))
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(**labels: str) -> str:
    merged = {"namespace": SCOPE.namespace, "app": SCOPE.app, **labels}
    return "{" + ",".join(f'{k}="{v}"' for k, v in merged.items()) + "}"


def _histogram(target: str, endpoint: str, latency: float, per_minute: int) -> list[dict]:
    """Input series of a histogram whose every sample takes `latency` seconds."""
    series = []
    for le in (*BUCKETS, "+Inf"):
        inside = le == "+Inf" or latency <= le
        le_text = le if le == "+Inf" else f"{le:g}"
        step = per_minute if inside else 0
        series.append({"series": f"diffproxy_target_latency_seconds_bucket"
                                 f"{_labels(target=target, endpoint=endpoint, le=le_text)}",
                       "values": f"0+{step}x30"})
    series.append({"series": f"diffproxy_target_latency_seconds_count"
                             f"{_labels(target=target, endpoint=endpoint)}",
                   "values": f"0+{per_minute}x30"})
    return series


def _run_promtool(tmp_path: Path, tests: list[dict], latency: LatencyThresholds | None = None) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(rules_file(SCOPE, DEFAULT.thresholds, latency or LatencyThresholds()))
    spec = tmp_path / "test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m",
                                    "tests": tests}, sort_keys=False))
    result = subprocess.run([PROMTOOL, "test", "rules", str(spec)], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _expected(alert: dict) -> dict:
    return {"exp_labels": alert["labels"], "exp_annotations": alert["annotations"]}


def _alert_labels(alertname: str, **labels: str) -> dict:
    """promtool's expected alert: labels, and the annotations with the labels filled in."""
    from topology.monitoring import ALERT_SEVERITY

    full = {"alertname": alertname, "namespace": SCOPE.namespace, "app": SCOPE.app,
            "severity": ALERT_SEVERITY[alertname], "service": SCOPE.service, **labels}
    rule = next(r for g in rule_groups(SCOPE, DEFAULT.thresholds, LatencyThresholds())
                for r in g["rules"] if r.get("alert") == alertname)
    annotations = {}
    for key, text in rule["annotations"].items():
        for name, value in full.items():
            text = text.replace(f"{{{{ $labels.{name} }}}}", value)
        annotations[key] = text
    return {"labels": full, "annotations": annotations}


@needs_promtool
def test_rendered_rules_pass_promtool_check(tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text(rules_file(SCOPE, DEFAULT.thresholds, LatencyThresholds()))
    result = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 11 rules found" in result.stdout


@needs_promtool
def test_promtool_check_rejects_a_broken_rule(tmp_path):
    """The check above can fail: a typo in PromQL is caught."""
    groups = rule_groups(SCOPE, DEFAULT.thresholds, LatencyThresholds())
    groups[1]["rules"][0]["expr"] = "sum by (app (diffproxy_noise_total)"
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0


@needs_promtool
def test_candidate_slower_fires_only_on_the_slow_endpoint(tmp_path):
    slow, same = "GET /delay/:id", "GET /get"
    series = [*_histogram("primary", slow, 0.004, 10), *_histogram("secondary", slow, 0.004, 10),
              *_histogram("candidate", slow, 0.085, 10),
              *_histogram("primary", same, 0.004, 10), *_histogram("secondary", same, 0.004, 10),
              *_histogram("candidate", same, 0.0045, 10)]
    _run_promtool(tmp_path, [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [
            # 10 samples per target: below -latency.minSamples (20), nothing is judged yet.
            {"eval_time": "1m", "alertname": "DiffProxyCandidateSlower", "exp_alerts": []},
            # 50: p50 is judged, p99 (which needs 100 samples) not yet.
            {"eval_time": "5m", "alertname": "DiffProxyCandidateSlower", "exp_alerts": [
                _expected(_alert_labels("DiffProxyCandidateSlower", endpoint=slow,
                                             quantile="p50"))]},
            {"eval_time": "12m", "alertname": "DiffProxyCandidateSlower", "exp_alerts": [
                _expected(_alert_labels("DiffProxyCandidateSlower", endpoint=slow,
                                             quantile="p50")),
                _expected(_alert_labels("DiffProxyCandidateSlower", endpoint=slow,
                                             quantile="p99"))]},
        ],
        "promql_expr_test": [{
            "expr": f'diffproxy:target_latency_seconds:p50{_labels(target="candidate", endpoint=slow)}',
            "eval_time": "5m",
            "exp_samples": [{"labels": "diffproxy:target_latency_seconds:p50"
                                       + _labels(target="candidate", endpoint=slow),
                             "value": 0.0875}],
        }],
    }])


@needs_promtool
def test_candidate_slower_is_quiet_when_secondary_is_as_far_off(tmp_path):
    """Noise baseline: when the secondary (production again) differs from primary by as
    much as the candidate does, the candidate is not called slower."""
    ep = "GET /delay/:id"
    series = [*_histogram("primary", ep, 0.004, 10), *_histogram("secondary", ep, 0.085, 10),
              *_histogram("candidate", ep, 0.085, 10)]
    _run_promtool(tmp_path, [{"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "15m", "alertname": "DiffProxyCandidateSlower", "exp_alerts": []}]}])


@needs_promtool
def test_candidate_slower_respects_the_absolute_threshold(tmp_path):
    ep = "GET /get"
    series = [*_histogram("primary", ep, 0.004, 10), *_histogram("secondary", ep, 0.004, 10),
              *_histogram("candidate", ep, 0.008, 10)]
    test = {"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "15m", "alertname": "DiffProxyCandidateSlower", "exp_alerts": []}]}
    _run_promtool(tmp_path, [test])  # 4 ms slower: under the default 10 ms
    test["alert_rule_test"][0]["exp_alerts"] = [
        _expected(_alert_labels("DiffProxyCandidateSlower", endpoint=ep, quantile=q))
        for q in ("p50", "p99")]
    _run_promtool(tmp_path, [test], LatencyThresholds(absolute_ms=1.0, relative=10.0))


@needs_promtool
def test_target_failing_fires_after_two_minutes_of_errors(tmp_path):
    sel = _labels
    series = [
        {"series": f"diffproxy_target_requests_total{sel(target='candidate')}", "values": "0+60x20"},
        {"series": f"diffproxy_target_errors_total{sel(target='candidate', kind='connect')}",
         "values": "0x5 0+30x15"},
        {"series": f"diffproxy_target_up{sel(target='candidate')}", "values": "1x20"},
        {"series": f"diffproxy_target_requests_total{sel(target='primary')}", "values": "0+60x20"},
        {"series": f"diffproxy_target_up{sel(target='primary')}", "values": "1x20"},
    ]
    _run_promtool(tmp_path, [{"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "4m", "alertname": "DiffProxyTargetFailing", "exp_alerts": []},
        {"eval_time": "12m", "alertname": "DiffProxyTargetFailing", "exp_alerts": [
            _expected(_alert_labels("DiffProxyTargetFailing", target="candidate"))]},
    ]}])


@needs_promtool
def test_target_down_fires_without_errors(tmp_path):
    series = [{"series": f"diffproxy_target_up{_labels(target='secondary')}", "values": "1 1 0x10"}]
    _run_promtool(tmp_path, [{"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "2m", "alertname": "DiffProxyTargetFailing", "exp_alerts": []},
        {"eval_time": "6m", "alertname": "DiffProxyTargetFailing", "exp_alerts": [
            _expected(_alert_labels("DiffProxyTargetFailing", target="secondary"))]},
    ]}])


@needs_promtool
def test_comparisons_dropped_fires_on_any_drop_and_clears(tmp_path):
    series = [{"series": f"diffproxy_comparisons_dropped_total{_labels()}",
               "values": "0x5 3 3x20"}]
    _run_promtool(tmp_path, [{"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "4m", "alertname": "DiffProxyComparisonsDropped", "exp_alerts": []},
        {"eval_time": "7m", "alertname": "DiffProxyComparisonsDropped", "exp_alerts": [
            _expected(_alert_labels("DiffProxyComparisonsDropped"))]},
        {"eval_time": "20m", "alertname": "DiffProxyComparisonsDropped", "exp_alerts": []},
    ]}])


@needs_promtool
def test_candidate_signal_fires_when_differences_exceed_noise(tmp_path):
    noisy = [{"series": f"diffproxy_differences_total{_labels()}", "values": "0+10x10"},
             {"series": f"diffproxy_noise_total{_labels()}", "values": "0+10x10"}]
    signal = [{"series": f"diffproxy_differences_total{_labels()}", "values": "0+20x10"},
              {"series": f"diffproxy_noise_total{_labels()}", "values": "0+10x10"}]
    _run_promtool(tmp_path, [
        {"interval": "1m", "input_series": noisy, "alert_rule_test": [
            {"eval_time": "8m", "alertname": "DiffProxyCandidateSignal", "exp_alerts": []}]},
        {"interval": "1m", "input_series": signal, "alert_rule_test": [
            {"eval_time": "8m", "alertname": "DiffProxyCandidateSignal", "exp_alerts": [
                _expected(_alert_labels("DiffProxyCandidateSignal"))]}]},
    ])


@needs_promtool
def test_rules_read_only_their_own_release(tmp_path):
    """Another release's diff proxy (another app label) in the same Prometheus fires nothing."""
    other = Scope(app="checkout-next-diffproxy", namespace=SCOPE.namespace, service="checkout")
    series = [{"series": f'diffproxy_comparisons_dropped_total{{namespace="{other.namespace}",'
                         f'app="{other.app}"}}', "values": "0 5 10 15 20 25"}]
    _run_promtool(tmp_path, [{"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "5m", "alertname": "DiffProxyComparisonsDropped", "exp_alerts": []}]}])


def test_scrape_config_loads_the_rules_and_both_targets():
    config = yaml.safe_load(scrape_config("127.0.0.1:1", "127.0.0.1:2", SCOPE, "rules.yml"))
    assert config["rule_files"] == ["rules.yml"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["diffproxy"]["static_configs"][0] == {
        "targets": ["127.0.0.1:1"], "labels": {"namespace": SCOPE.namespace, "app": SCOPE.app}}
    assert jobs["envoy-sidecar"]["metrics_path"] == "/stats/prometheus"


@needs_promtool
def test_scrape_config_passes_promtool(tmp_path):
    (tmp_path / "rules.yml").write_text(rules_file(SCOPE, DEFAULT.thresholds, LatencyThresholds()))
    config = tmp_path / "prometheus.yml"
    config.write_text(scrape_config("127.0.0.1:1", "127.0.0.1:2", SCOPE, "rules.yml"))
    result = subprocess.run([PROMTOOL, "check", "config", str(config)], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_panels_carry_exactly_the_tested_queries():
    board = dashboard(SCOPE)
    shown = {p["title"]: [t["expr"] for t in p["targets"]] for p in board["panels"]}
    assert shown == dashboard_queries(SCOPE)
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    json.dumps(board)  # plain JSON, as the ConfigMap carries it
