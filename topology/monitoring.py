"""Prometheus for a mirrored release, defined once: recording and alerting rules, the local
Prometheus's scrape config, the Grafana dashboard, and the cluster's monitoring objects.

The local stack writes `rules_file()` and `scrape_config()` for its own Prometheus; the
Pulumi component and `manifests/monitoring/` put the same rules in a `PrometheusRule`, the
same dashboard in a ConfigMap for Grafana's sidecar, and scrape the diff proxy through
`prometheus.io/*` pod annotations or a `ServiceMonitor`.

Every rule is scoped to one diff proxy by its `namespace` and `app` labels (`Scope`), so
any number of releases can share one Prometheus without their alerts mixing: the usual
`kubernetes-pods` scrape job (annotations) maps pod labels onto the series, the
ServiceMonitor copies `app` with `podTargetLabels`, the local scrape config sets both. The latency
rules compare each target's whole distribution since the diff proxy started (cumulative
buckets, not a rate window), as the diff proxy's own latency verdict does (docs/latency.md):
a release test is judged on everything it saw, and a quiet hour must not hide a regression.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from topology.model import LatencyThresholds, TopologyError

# The diff proxy's series (diffproxy/metrics.py) the rules and the dashboard read.
LATENCY = "diffproxy_target_latency_seconds"
# A quantile is judged only when this many samples lie above it, per target.
TAIL_SAMPLES = 1
QUANTILES = {"p50": 0.5, "p99": 0.99}
ALERT_SEVERITY = {"DiffProxyCandidateSignal": "warning", "DiffProxyCandidateSlower": "warning",
                  "DiffProxyTargetFailing": "critical", "DiffProxyComparisonsDropped": "warning"}
MODES = ("off", "annotations", "operator")
DURATION = re.compile(r"([0-9]+(ms|s|m|h|d|w|y))+")  # a Prometheus duration
DASHBOARD_LABELS = {"grafana_dashboard": "1"}


@dataclass(frozen=True)
class Scope:
    """Which diff proxy's series a rule reads: its pods' namespace and `app` label."""

    app: str
    namespace: str
    service: str  # -serviceName, carried on every alert

    def selector(self, **extra: str) -> str:
        labels = {"namespace": self.namespace, "app": self.app, **extra}
        return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


@dataclass(frozen=True)
class Monitoring:
    """How a release is watched on a cluster (Pulumi config `prometheus`).

    `annotations`: `prometheus.io/scrape|port|path` on the diff proxy's pods (Istio merges
    them into its own scrape endpoint); `operator`: a ServiceMonitor and a PrometheusRule,
    which need the Prometheus Operator's CRDs. Both ship the dashboard ConfigMap.
    """

    mode: str = "off"
    # Labels on the ServiceMonitor and PrometheusRule: what the operator's Prometheus
    # selects them by (kube-prometheus-stack: {"release": "<its Helm release>"}).
    labels: Mapping[str, str] = field(default_factory=dict)
    dashboard: bool = True
    dashboard_namespace: str | None = None  # None: the diff proxy's namespace
    dashboard_labels: Mapping[str, str] = field(default_factory=lambda: dict(DASHBOARD_LABELS))
    scrape_interval: str = "15s"

    @property
    def on(self) -> bool:
        return self.mode != "off"

    def check(self, key: str = "monitoring") -> None:
        if self.mode not in MODES:
            raise TopologyError(f"{key}.mode must be {', '.join(MODES)}, got {self.mode!r}")
        if not DURATION.fullmatch(self.scrape_interval or ""):
            raise TopologyError(f"{key}.scrape_interval must be a Prometheus duration such as "
                                f"15s, got {self.scrape_interval!r}")


# Rules ---------------------------------------------------------------------------------


def _quantile_record(name: str) -> str:
    return f"diffproxy:target_latency_seconds:{name}"


def rule_groups(scope: Scope, thresholds, latency: LatencyThresholds) -> list[dict]:
    """Prometheus rule groups (the `groups:` of a rules file, a PrometheusRule's spec).

    `thresholds`: the body thresholds (topology.model.Thresholds), for the signal alert.
    """
    sel = scope.selector()
    by = "namespace, app"
    recording = [
        {"record": "diffproxy:requests:rate5m",
         "expr": f"sum by ({by}) (rate(diffproxy_requests_total{sel}[5m]))"},
        {"record": "diffproxy:comparisons_completed:rate5m",
         "expr": f"sum by ({by}) (rate(diffproxy_comparisons_completed_total{sel}[5m]))"},
        {"record": "diffproxy:comparisons_dropped:rate5m",
         "expr": f"sum by ({by}) (rate(diffproxy_comparisons_dropped_total{sel}[5m]))"},
        {"record": "diffproxy:target_error_ratio:rate5m",
         "expr": (f"sum by ({by}, target) (rate(diffproxy_target_errors_total{sel}[5m]))"
                  f" / sum by ({by}, target) (rate(diffproxy_target_requests_total{sel}[5m]))")},
        {"record": "diffproxy:target_latency_seconds:count",
         "expr": f"sum by ({by}, target, endpoint) ({LATENCY}_count{sel})"},
    ]
    for name, q in QUANTILES.items():
        recording.append({
            "record": _quantile_record(name),
            "expr": (f"histogram_quantile({q:g}, sum by ({by}, target, endpoint, le) "
                     f"({LATENCY}_bucket{sel}))")})

    rel = thresholds.relative / 100.0
    # Diffy's rule on the totals: the candidate differs more than the noise, by the relative
    # threshold. The per-field verdicts live in the diff proxy; this is the page-worthy part.
    signal = (f"(sum by ({by}) (diffproxy_differences_total{sel})"
              f" - sum by ({by}) (diffproxy_noise_total{sel}))"
              f" / clamp_min(sum by ({by}) (diffproxy_differences_total{sel})"
              f" + sum by ({by}) (diffproxy_noise_total{sel}), 1) > {rel:g}")
    alerts = [
        _alert("DiffProxyCandidateSignal", signal, "1m",
               "The candidate differs from primary more than primary differs from itself",
               "{{ $labels.namespace }}/{{ $labels.app }}: candidate responses differ beyond the noise; open the "
               "console for the fields."),
        _alert("DiffProxyCandidateSlower", _slower(scope, latency), "0s",
               "The candidate is slower than primary on {{ $labels.endpoint }}",
               "{{ $labels.endpoint }} is slower on the candidate at {{ $labels.quantile }} "
               "than the secondary-vs-primary noise allows (docs/latency.md)."),
        _alert("DiffProxyTargetFailing",
               (f"diffproxy:target_error_ratio:rate5m{sel} > 0.05"
                f" or max by ({by}, target) (diffproxy_target_up{sel}) == 0"), "2m",
               "Target {{ $labels.target }} is failing",
               "More than 5% of requests to {{ $labels.target }} got no usable response, or "
               "it did not answer its last request or probe."),
        _alert("DiffProxyComparisonsDropped",
               f"sum by ({by}) (increase(diffproxy_comparisons_dropped_total{sel}[5m])) > 0",
               "0s", "The diff proxy dropped comparisons",
               "The comparison queue was full: some mirrored requests were not compared."),
    ]
    for alert in alerts:
        alert["labels"] = {"severity": ALERT_SEVERITY[alert["alert"]], "service": scope.service}
    return [{"name": f"{scope.namespace}.{scope.app}.recording", "rules": recording},
            {"name": f"{scope.namespace}.{scope.app}.alerts", "rules": alerts}]


def _alert(name: str, expr: str, for_: str, summary: str, description: str) -> dict:
    alert = {"alert": name, "expr": expr}
    if for_ != "0s":
        alert["for"] = for_
    alert["annotations"] = {"summary": summary, "description": description}
    return alert


def _slower(scope: Scope, t: LatencyThresholds) -> str:
    """candidate - primary > |secondary - primary| + max(absolute, relative x primary), at
    p50 and p99, each with its own sample floor; the result carries a `quantile` label."""
    parts = []
    for name, q in QUANTILES.items():
        rec = _quantile_record(name)
        p = f"{rec}{scope.selector(target='primary')}"
        s = f"{rec}{scope.selector(target='secondary')}"
        c = f"{rec}{scope.selector(target='candidate')}"
        # p99 needs samples above it: 100 at least, as the diff proxy's verdict does.
        floor = max(t.min_samples, round(TAIL_SAMPLES / (1 - q)))
        counts = "diffproxy:target_latency_seconds:count"
        enough = (f"min by (namespace, app, endpoint) ({counts}{scope.selector()}) "
                  f">= {floor}")
        margin = (f"abs({s} - ignoring(target) {p})"
                  f" + ignoring(target) clamp_min({p} * {t.relative / 100:g}, "
                  f"{t.absolute_ms / 1000:g})")
        slower = (f"({c}\n   - ignoring(target) {p})\n  > ignoring(target) ({margin})")
        parts.append(f'label_replace(\n  ({slower})\n  and ignoring(target) ({enough}),\n'
                     f'  "quantile", "{name}", "", "")')
    return "\nor ".join(parts)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:
        return True


_Dumper.add_representer(str, lambda d, v: d.represent_scalar(
    "tag:yaml.org,2002:str", v, style="|" if "\n" in v else None))


def dump(document: object) -> str:
    """YAML with multi-line PromQL as literal blocks, readable in a rules file or a CR."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100)


def rules_file(scope: Scope, thresholds, latency: LatencyThresholds) -> str:
    return dump({"groups": rule_groups(scope, thresholds, latency)})


# The local Prometheus ---------------------------------------------------------------------


def scrape_config(diffproxy_admin: str, envoy_admin: str, scope: Scope, rules_path: str,
                  interval: str = "1s") -> str:
    """prometheus.yml for the local stack: the diff proxy's admin port and the caller's
    Envoy, labelled as a cluster's Prometheus would label them (namespace, app)."""
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [rules_path],
        "scrape_configs": [
            {"job_name": "diffproxy", "metrics_path": "/metrics",
             "static_configs": [{"targets": [diffproxy_admin],
                                 "labels": {"namespace": scope.namespace, "app": scope.app}}]},
            {"job_name": "envoy-sidecar", "metrics_path": "/stats/prometheus",
             "static_configs": [{"targets": [envoy_admin]}]},
        ],
    }
    return dump(config)


# The dashboard ---------------------------------------------------------------------------


def dashboard_queries(scope: Scope) -> dict[str, list[str]]:
    """Panel title -> its PromQL queries; the e2e suite runs every one on a real Prometheus."""
    sel = scope.selector()
    return {
        "Mirrored requests in": [f"sum(rate(diffproxy_requests_total{sel}[5m]))"],
        "Comparisons": [f"sum(rate(diffproxy_comparisons_completed_total{sel}[5m]))",
                        f"sum(rate(diffproxy_comparisons_dropped_total{sel}[5m]))"],
        "Candidate differences vs noise": [f"sum(diffproxy_differences_total{sel})",
                                           f"sum(diffproxy_noise_total{sel})"],
        "Targets up": [f"max by (target) (diffproxy_target_up{sel})"],
        "Requests per target": [
            f"sum by (target) (rate(diffproxy_target_requests_total{sel}[5m]))"],
        "Latency p50 by endpoint": [f"{_quantile_record('p50')}{sel}"],
        "Latency p99 by endpoint": [f"{_quantile_record('p99')}{sel}"],
        "Candidate slower (firing)": [f'ALERTS{{alertname="DiffProxyCandidateSlower",'
                                      f'namespace="{scope.namespace}",app="{scope.app}"}}'],
    }


def dashboard(scope: Scope) -> dict:
    """A Grafana dashboard (schema 39) on the default Prometheus data source."""
    panels = []
    for i, (title, queries) in enumerate(dashboard_queries(scope).items()):
        unit = "s" if title.startswith("Latency") else "short"
        panels.append({
            "id": i + 1, "type": "timeseries", "title": title,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(ord("A") + j), "expr": q,
                         "legendFormat": "{{target}} {{endpoint}}" if "endpoint" in title
                         else "__auto"} for j, q in enumerate(queries)],
        })
    return {
        "title": f"Mirrored release: {scope.service} ({scope.namespace}/{scope.app})",
        "uid": f"mirror-diff-{scope.namespace}-{scope.app}"[:40],
        "tags": ["mirror-diff"],
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [{"name": "datasource", "type": "datasource",
                                 "query": "prometheus", "label": "Data source"}]},
        "panels": panels,
    }


def dashboard_json(scope: Scope) -> str:
    return json.dumps(dashboard(scope), indent=2, sort_keys=False) + "\n"
