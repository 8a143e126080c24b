"""The benchmark harness end to end, tiny: every scenario runs and reports well-formed figures.

No timing thresholds here: speed is what `python -m bench` reports, not what tests judge.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import profile, publish
from bench.scenarios import _late_slope
from bench.settings import REPO, SCENARIOS, parse_args
from toolbox import prom

pytestmark = pytest.mark.timeout(300)

PROXIED = ("c", "d", "e", "g")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    docs = REPO / "docs" / "bench.md"
    docs_before = docs.read_bytes() if docs.exists() else None
    readme_before = (REPO / "README.md").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=280)
    runs = list(out.iterdir())
    return {"proc": proc, "runs": runs, "docs_before": docs_before, "docs": docs,
            "readme_before": readme_before}


def _dir(smoke: dict) -> Path:
    assert smoke["proc"].returncode == 0, smoke["proc"].stdout[-3000:] + smoke["proc"].stderr[-3000:]
    assert len(smoke["runs"]) == 1, smoke["runs"]
    return smoke["runs"][0]


def test_every_scenario_has_positive_figures(smoke):
    raw = json.loads((_dir(smoke) / "results.json").read_text())
    assert raw["failures"] == {}
    shared = raw["shared_store"]
    assert [(r["store"], r["replicas"]) for r in shared] == [
        ("sqlite", 1), ("postgres", 1), ("postgres", 2), ("postgres", 3)]
    for r in shared:
        assert r["requests"] > 0 and r["compared"] > 0 and r["totals_agree"], r
        if r["store"] == "postgres":
            assert r["db_cpu_ms_per_1k_comparisons"] > 0 and r["db_wal_bytes_per_comparison"] > 0
    assert sorted(raw["scenarios"]) == ["a", "b", "c", "d", "e", "f", "g"]
    for key, r in raw["scenarios"].items():
        assert r["requests"] > 0, key
        assert r["rps"] > 0 and r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"], (key, r)
        assert r["cpu_s_per_1k"] > 0, (key, r)
        assert r["rss_before_mb"] > 0 and r["rss_after_mb"] > 0, (key, r)
        assert r["rss_max_mb"] >= max(r["rss_before_mb"], r["rss_after_mb"]) - 0.1, (key, r)
        assert r["processes"] >= 1, (key, r)
        assert sum(r["errors"].values()) == 0, (key, r["errors"])
    # Like for like: each fan-out runs the same number of serving processes.
    assert {raw["scenarios"][k]["processes"] for k in ("b", "c", "d", "e", "f", "g")} == {
        raw["settings"]["workers"]}


def test_proxied_scenarios_account_for_their_comparisons(smoke):
    raw = json.loads((_dir(smoke) / "results.json").read_text())
    for key in PROXIED:
        c = raw["scenarios"][key]["comparisons"]
        assert c["drained"], (key, c)
        assert c["completed"] > 0, (key, c)
        assert c["completed"] + c["dropped"] + c["failed"] >= raw["scenarios"][key]["requests"], (key, c)
    for key in ("a", "b"):
        assert raw["scenarios"][key]["comparisons"] is None
    e = raw["scenarios"]["e"]
    assert set(e["reference"]) == {"primary", "secondary", "candidate"}
    assert e["reference_p50_ms"] == max(e["reference"].values())


def test_memory_scenario_reports_growth_over_distinct_paths(smoke):
    m = json.loads((_dir(smoke) / "results.json").read_text())["memory"]
    assert m["requests"] > 0 and m["paths"] == 200
    assert m["rss_after_mb"] > 0 and len(m["samples"]) >= 2
    assert m["growth_mb"] == pytest.approx(m["rss_after_mb"] - m["rss_before_mb"], abs=0.2)
    # Half the paths are /p<n>/x, each its own endpoint: many more than one endpoint recorded.
    assert m["endpoints"] > 10


def test_table_targets_and_chart_are_rendered(smoke):
    run_dir = _dir(smoke)
    out = smoke["proc"].stdout
    for key in ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)", "(g)"):
        assert f"| {key} " in out
    rows = [line for line in out.splitlines() if line.startswith("| (") and "**" not in line]
    # Envoy's fan-out row stands next to nginx's, before the diff proxy's rows.
    assert [r[2:5] for r in rows[:3]] == ["(a)", "(b)", "(f)"], rows
    assert "RSS max" in out
    targets = [line for line in out.splitlines() if line.startswith("| (") and "**" in line
               or line.startswith("| RSS growth")]
    assert len(targets) == 5, out
    assert all(("**PASS**" in t) or ("**MISS**" in t) for t in targets), targets
    png = run_dir / "bench.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "![benchmark chart](bench.png)" in (run_dir / "bench.md").read_text()


def test_smoke_run_leaves_committed_docs_alone(smoke):
    _dir(smoke)
    after = smoke["docs"].read_bytes() if smoke["docs"].exists() else None
    assert after == smoke["docs_before"]
    assert (REPO / "README.md").read_bytes() == smoke["readme_before"]


def test_published_pages_link_the_chart_from_where_they_stand():
    chart = REPO / "docs" / "img" / "bench.png"
    assert publish.chart_link(chart, REPO / "README.md") == "docs/img/bench.png"
    assert publish.chart_link(chart, REPO / "docs" / "bench.md") == "img/bench.png"


def test_prometheus_text_is_summed_across_label_sets():
    s = prom.parse('# HELP x y\nreq_total{method="GET"} 3\nreq_total{method="POST"} 2\n'
                   'depth 0\n')
    assert prom.total(s, "req_total") == 5
    assert prom.total(s, "req_total", method="POST") == 2
    assert prom.total(s, "depth") == 0
    assert prom.total(s, "missing") is None
    assert prom.value(s, "req_total", method="GET") == 3 and prom.value(s, "missing") == 0


def test_text_that_is_not_prometheus_is_refused():
    with pytest.raises(ValueError):
        prom.parse('bad{x="1"} nan-ish\n')


def test_profile_summary_merges_lines_of_one_function():
    raw = ("main (app.py:3);handle (diffproxy/proxy.py:10);loads (json/__init__.py:346) 6\n"
           "main (app.py:3);handle (diffproxy/proxy.py:12) 3\n"
           "thread (0x1);main (app.py:3) 1\n")
    p = profile.summarise(raw)
    assert p.samples == 10
    assert dict(p.self_pct)["handle (diffproxy/proxy.py)"] == pytest.approx(30.0)
    assert dict(p.inclusive_pct)["main (app.py)"] == pytest.approx(100.0)
    assert dict(p.by_area_pct) == pytest.approx({"json": 60.0, "diffproxy/proxy": 30.0, "app": 10.0})


def test_docs_section_is_replaced_and_hand_written_text_kept():
    page = f"# B\nintro\n{publish.BEGIN}\nold\n{publish.END}\n## Profile\nkept\n"
    new = publish.replace_section(page, "fresh")
    assert "old" not in new and "fresh" in new and new.endswith("## Profile\nkept\n")
    assert publish.replace_section("# B\n", "x").count(publish.BEGIN) == 1


def test_late_slope_ignores_the_start_up_jump():
    samples = [(0, 50.0), (10, 80.0)] + [(i * 100, 80.0 + i * 0.5) for i in range(1, 9)]
    assert _late_slope(samples) == pytest.approx(0.005)


def test_bad_flags_are_refused():
    with pytest.raises(SystemExit):
        parse_args(["--scenarios", "a,zz"])
    with pytest.raises(SystemExit):
        parse_args(["--duration", "0"])
    assert parse_args(["--smoke"]).scenarios == SCENARIOS
