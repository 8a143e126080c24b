"""Turning a run into Markdown: the results table, the issue's targets, the machine it ran on."""

from __future__ import annotations

from dataclasses import dataclass

from bench.results import RunResult, ScenarioResult

RSS_BUDGET_MB = 64.0


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    verdict: str   # PASS, MISS, or n/a when the scenarios it needs did not run


def targets(run: RunResult) -> list[Target]:
    sc = run.scenarios
    out = []
    name = "(c)/(b) throughput >= 0.5, zero dropped comparisons"
    if "b" in sc and "c" in sc and sc["c"].comparisons and sc["b"].rps > 0:
        ratio = sc["c"].rps / sc["b"].rps
        dropped = sc["c"].comparisons.dropped
        out.append(Target(name, f"{ratio:.2f} ({sc['c'].rps:,.0f} / {sc['b'].rps:,.0f} req/s), "
                                f"{dropped:,} dropped",
                          "PASS" if ratio >= 0.5 and dropped == 0 else "MISS"))
    else:
        out.append(Target(name, "not run", "n/a"))
    name = "(d) >= 1,000 req/s, every comparison completed"
    if "d" in sc and sc["d"].comparisons:
        d, c = sc["d"], sc["d"].comparisons
        complete = c.dropped == 0 and c.failed == 0 and c.completed >= c.requests
        out.append(Target(name, f"{d.rps:,.0f} req/s, {c.completed:,}/{c.requests:,} completed, "
                                f"{c.dropped:,} dropped, {c.failed:,} failed",
                          "PASS" if d.rps >= 1000 and complete else "MISS"))
    else:
        out.append(Target(name, "not run", "n/a"))
    name = "(e) p50 <= 1.1 x slowest backend's p50"
    if "e" in sc and sc["e"].reference_p50_ms:
        e = sc["e"]
        ratio = e.p50_ms / e.reference_p50_ms
        out.append(Target(name, f"{e.p50_ms:.1f} ms vs {e.reference_p50_ms:.1f} ms ({ratio:.2f}x)",
                          "PASS" if ratio <= 1.1 else "MISS"))
    else:
        out.append(Target(name, "not run", "n/a"))
    name = f"RSS growth <= {RSS_BUDGET_MB:.0f} MB over 1,000,000 requests"
    m = run.memory
    if m is not None:
        # Fewer requests than the target's million are judged on the projection, not the raw
        # growth, so a short run cannot pass by being short.
        out.append(Target(name, f"{m.growth_mb:.1f} MB over {m.requests:,} requests; "
                                f"projected {m.projected_growth_1m_mb:.1f} MB at 1,000,000",
                          "PASS" if max(m.growth_mb, m.projected_growth_1m_mb) <= RSS_BUDGET_MB else "MISS"))
    else:
        out.append(Target(name, "not run", "n/a"))
    return out


def _errors(r: ScenarioResult) -> str:
    n = sum(r.errors.values())
    return "0" if n == 0 else ", ".join(f"{k} {v}" for k, v in r.errors.items() if v)


def scenario_table(run: RunResult) -> str:
    rows = ["| Scenario | conns | req/s | p50 ms | p99 ms | CPU s / 1k req | comparisons done / dropped "
            "| RSS before → after MB | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for key in sorted(run.scenarios):
        r = run.scenarios[key]
        comp = (f"{r.comparisons.completed:,} / {r.comparisons.dropped:,}"
                + ("" if r.comparisons.drained else " (not drained)")) if r.comparisons else "—"
        p50 = f"{r.p50_ms:.2f}"
        if r.reference_p50_ms:
            p50 += f" (backend {r.reference_p50_ms:.2f})"
        rows.append(f"| {r.title} | {r.connections} | {r.rps:,.0f} | {p50} | {r.p99_ms:.2f} "
                    f"| {r.cpu_s_per_1k:.3f} | {comp} | {r.rss_before_mb:.1f} → {r.rss_after_mb:.1f} "
                    f"| {_errors(r)} |")
    return "\n".join(rows)


def memory_table(run: RunResult) -> str:
    m = run.memory
    if m is None:
        return ""
    c = m.comparisons
    return "\n".join([
        "| requests run | distinct paths | endpoints recorded | req/s | RSS before → after MB "
        "| growth MB | projected growth at 1M MB | comparisons done / dropped |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {m.requests:,} (asked {m.target_requests:,}) | {m.paths:,} | {m.endpoints:,} | {m.rps:,.0f} "
        f"| {m.rss_before_mb:.1f} → {m.rss_after_mb:.1f} | {m.growth_mb:.1f} | {m.projected_growth_1m_mb:.1f} "
        f"| {c.completed:,} / {c.dropped:,} |",
    ])


def targets_table(run: RunResult) -> str:
    rows = ["| Target (from the issue) | measured | verdict |", "|---|---|---|"]
    rows += [f"| {t.name} | {t.measured} | **{t.verdict}** |" for t in targets(run)]
    return "\n".join(rows)


def machine_line(run: RunResult) -> str:
    m, v = run.machine, run.machine["versions"]
    return (f"{m['nproc']} CPU(s), {m['cpu_model']}, kernel {m['kernel']}, {m['mem_total_mb']:,} MB RAM, "
            f"load average at start {' '.join(m['loadavg_at_start'])}. "
            f"Python {v['python']}, diffproxy {v['diffproxy']} (git {v['git']}), aiohttp {v['aiohttp']}, "
            f"uvloop {v['uvloop']}, httptools {v.get('httptools', '?')}, deepdiff {v['deepdiff']}, "
            f"nginx {v['nginx']}, wrk {v['wrk']}.")


def profile_section(run: RunResult) -> str:
    parts = []
    for key, p in sorted(run.profiles.items()):
        parts.append(f"**Profile of scenario ({key})** (py-spy --gil, 100 Hz): {p.samples} samples, "
                     f"{p.rps_while_profiling:,.0f} req/s while sampled. Leaf frame by package: "
                     + ", ".join(f"{k} {v:.0f}%" for k, v in p.by_area_pct[:8]) + ".")
        parts += ["", "| self % | function |", "|---:|---|"]
        parts += [f"| {v:.1f} | `{k}` |" for k, v in p.self_pct[:12]]
        parts.append("")
    return "\n".join(parts)


def markdown(run: RunResult, chart: str | None = None) -> str:
    s = run.settings
    parts = [
        f"Run of {run.started} on {machine_line(run)}",
        "",
        f"wrk: {s['threads']} thread(s), {s['duration']:g} s per scenario after {s['warmup']:g} s warm-up; "
        f"nginx worker_processes {s['nginx_workers']}; diff proxy -workers="
        f"{s.get('proxy_workers', 1)} (processes sharing the proxy port). " + " ".join(run.notes),
        "",
        scenario_table(run),
        "",
        "CPU and RSS are those of the process under test (all its processes): "
        + "; ".join(f"({k}) {r.under_test}" for k, r in sorted(run.scenarios.items()))
        + ". CPU is read after the comparison queue drained.",
        "",
    ]
    if run.memory is not None:
        parts += ["Memory scenario (diff proxy, candidate differs, "
                  f"{run.memory.connections} connections):", "", memory_table(run), ""]
        mc = run.memory.comparisons
        if mc.dropped:
            share = 100.0 * mc.completed / max(1, mc.completed + mc.dropped)
            parts += [f"Only {share:.0f}% of these requests were compared (the rest were dropped at "
                      "the full queue), so the growth of the comparison and store path is "
                      "under-represented.", ""]
    if run.shared_store:
        from bench.shared_store import SharedStoreRow, table

        rows = [r if isinstance(r, SharedStoreRow) else SharedStoreRow(**r)
                for r in run.shared_store]
        parts += ["Shared store (README \"Scaling out\"): replicas behind one round-robin nginx, "
                  "candidate differs; every process on this machine's cores.", "", table(rows), ""]
    parts += [targets_table(run), ""]
    if run.failures:
        parts += ["Scenarios that produced no figures:", ""]
        parts += [f"- {k}: {v}" for k, v in run.failures.items()]
        parts.append("")
    if run.profiles:
        parts += [profile_section(run), ""]
    if chart:
        parts += [f"![benchmark chart]({chart})", ""]
    return "\n".join(parts)
