"""Turning a run into Markdown: the results table, the issue's targets, the machine it ran on."""

from __future__ import annotations

from dataclasses import dataclass

from bench.results import RunResult, ScenarioResult

RSS_BUDGET_MB = 64.0
# Rows in this order: each C/C++ fan-out next to the other, then the diff proxy's.
ORDER = ("a", "b", "f", "c", "d", "e", "g")
CPU_RATIO = 2.0        # (c) CPU per request at most this times nginx mirror's
THROUGHPUT_RATIO = 0.8  # (c) throughput at least this share of nginx mirror's
D_RPS = 5000
E_RATIO = 1.05


def ordered(run: RunResult) -> list[str]:
    return sorted(run.scenarios, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER))


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    verdict: str   # PASS, MISS, or n/a when the scenarios it needs did not run


def targets(run: RunResult) -> list[Target]:
    sc = run.scenarios
    out = []
    name = (f"(c) vs (b), same processes: CPU per request <= {CPU_RATIO:g}x, throughput >= "
            f"{THROUGHPUT_RATIO:g}x, zero dropped comparisons")
    if "b" in sc and "c" in sc and sc["c"].comparisons and sc["b"].rps > 0 and sc["b"].cpu_s_per_1k > 0:
        b, c = sc["b"], sc["c"]
        cpu, rps = c.cpu_s_per_1k / b.cpu_s_per_1k, c.rps / b.rps
        dropped = c.comparisons.dropped
        ok = cpu <= CPU_RATIO and rps >= THROUGHPUT_RATIO and dropped == 0 and b.processes == c.processes
        out.append(Target(name, f"CPU {cpu:.2f}x ({c.cpu_s_per_1k:.3f} / {b.cpu_s_per_1k:.3f} s per 1k), "
                                f"throughput {rps:.2f}x ({c.rps:,.0f} / {b.rps:,.0f} req/s), "
                                f"{dropped:,} dropped; processes {c.processes} / {b.processes}",
                          "PASS" if ok else "MISS"))
    else:
        out.append(Target(name, "not run", "n/a"))
    name = f"(d) >= {D_RPS:,} req/s, every comparison completed"
    if "d" in sc and sc["d"].comparisons:
        d, c = sc["d"], sc["d"].comparisons
        complete = c.dropped == 0 and c.failed == 0 and c.completed >= c.requests
        out.append(Target(name, f"{d.rps:,.0f} req/s, {c.completed:,}/{c.requests:,} completed, "
                                f"{c.dropped:,} dropped, {c.failed:,} failed",
                          "PASS" if d.rps >= D_RPS and complete else "MISS"))
    else:
        out.append(Target(name, "not run", "n/a"))
    name = f"(e) p50 <= {E_RATIO:g} x slowest backend's p50"
    if "e" in sc and sc["e"].reference_p50_ms:
        e = sc["e"]
        ratio = e.p50_ms / e.reference_p50_ms
        out.append(Target(name, f"{e.p50_ms:.1f} ms vs {e.reference_p50_ms:.1f} ms ({ratio:.2f}x)",
                          "PASS" if ratio <= E_RATIO else "MISS"))
    else:
        out.append(Target(name, "not run", "n/a"))
    name = "(g) realistic mix: every comparison completed (memory ceiling shown)"
    if "g" in sc and sc["g"].comparisons:
        g, c = sc["g"], sc["g"].comparisons
        complete = c.dropped == 0 and c.failed == 0 and c.completed >= c.requests
        out.append(Target(name, f"{g.rps:,.0f} req/s, {c.completed:,}/{c.requests:,} completed, "
                                f"{c.dropped:,} dropped, {c.failed:,} failed; RSS max "
                                f"{g.rss_max_mb:.1f} MB", "PASS" if complete else "MISS"))
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
    rows = ["| Scenario | processes | conns | req/s | p50 ms | p99 ms | CPU s / 1k req "
            "| comparisons done / dropped | RSS before → after (max) MB | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for key in ordered(run):
        r = run.scenarios[key]
        comp = (f"{r.comparisons.completed:,} / {r.comparisons.dropped:,}"
                + ("" if r.comparisons.drained else " (not drained)")) if r.comparisons else "—"
        p50 = f"{r.p50_ms:.2f}"
        if r.reference_p50_ms:
            p50 += f" (backend {r.reference_p50_ms:.2f})"
        rows.append(f"| {r.title} | {r.processes} | {r.connections} | {r.rps:,.0f} | {p50} "
                    f"| {r.p99_ms:.2f} | {r.cpu_s_per_1k:.3f} | {comp} "
                    f"| {r.rss_before_mb:.1f} → {r.rss_after_mb:.1f} ({r.rss_max_mb:.1f}) "
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
        f"wrk: {s['threads']} thread(s), {s['duration']:g} s per scenario after {s['warmup']:g} s warm-up. "
        f"Processes per fan-out, the same on each side: nginx mirror worker_processes "
        f"{s['workers']}, Envoy --concurrency {s['workers']}, diff proxy -workers={s['workers']} "
        f"(processes sharing the proxy port); the backends' nginx worker_processes "
        f"{s['backend_workers']}. " + " ".join(run.notes),
        "",
        scenario_table(run),
        "",
        "CPU and RSS are those of the process under test (all its processes): "
        + "; ".join(f"({k}) {run.scenarios[k].under_test}" for k in ordered(run))
        + ". CPU is read after the comparison queue drained; RSS max is the highest of the "
          "samples taken twice a second under load.",
        "",
    ]
    if "g" in run.scenarios:
        g = run.scenarios["g"]
        parts += [f"(g) realistic mix: {s.get('mix_documents', 100)} JSON documents requested in turn, "
                  "200 B to 50 KB (log-spread), one in ten differing on the candidate, one in a "
                  f"hundred of 1 MB. Memory ceiling: RSS max **{g.rss_max_mb:.1f} MB** "
                  f"({g.rss_before_mb:.1f} MB at start, {g.rss_after_mb:.1f} MB after the drain).", ""]
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
