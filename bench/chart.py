"""One PNG with the run's figures side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on CI or here; must precede pyplot
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from bench.report import RSS_BUDGET_MB, ordered
from bench.results import RunResult

_PLAIN = FuncFormatter(lambda v, _: f"{v:g}")
_COLOURS = {"a": "#7f7f7f", "b": "#2ca02c", "c": "#1f77b4", "d": "#ff7f0e", "e": "#9467bd", "f": "#8c564b",
            "g": "#17becf"}


def _log(ax, values: list[float]) -> None:
    """Log axis whose floor sits a decade under the smallest bar, so every bar is visible."""
    positive = [v for v in values if v > 0]
    ax.set_yscale("log")
    if positive:
        ax.set_ylim(bottom=min(positive) / 10, top=max(positive) * 3)
    ax.yaxis.set_major_formatter(_PLAIN)
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _labelled_bars(ax, labels: list[str], values: list[float], colours: list[str], title: str,
                   fmt: str) -> None:
    """A log-scale bar per scenario with its value written on top."""
    ax.bar(labels, values, color=colours)
    ax.set_title(title)
    _log(ax, values)
    for i, value in enumerate(values):
        ax.annotate(fmt.format(value), (i, value), ha="center", va="bottom", fontsize=8)


def draw(run: RunResult, path: Path) -> Path:
    keys = ordered(run)
    labels = [f"({k})" for k in keys]
    colours = [_COLOURS[k] for k in keys]
    sc = [run.scenarios[k] for k in keys]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    _labelled_bars(axes[0][0], labels, [r.rps for r in sc], colours,
                   "Throughput (req/s, log, higher is better)", "{:,.0f}")

    ax = axes[0][1]
    xs = range(len(keys))
    ax.bar([x - 0.2 for x in xs], [r.p50_ms for r in sc], width=0.4, label="p50", color=colours)
    ax.bar([x + 0.2 for x in xs], [r.p99_ms for r in sc], width=0.4, label="p99", color=colours,
           alpha=0.45, hatch="//")
    ax.set_xticks(list(xs), labels)
    _log(ax, [r.p50_ms for r in sc] + [r.p99_ms for r in sc])
    ax.set_title("Latency (ms, log; solid p50, hatched p99)")

    _labelled_bars(axes[1][0], labels, [r.cpu_s_per_1k for r in sc], colours,
                   "CPU s per 1,000 requests (process under test, log)", "{:.3g}")

    ax = axes[1][1]
    if run.memory is not None and run.memory.samples:
        m = run.memory
        xs_m = [x for x, _ in m.samples]
        ax.plot(xs_m, [y for _, y in m.samples], color=_COLOURS["d"], label="diff proxy RSS")
        ax.axhline(m.rss_before_mb + RSS_BUDGET_MB, color="red", linestyle="--",
                   label=f"start + {RSS_BUDGET_MB:.0f} MB budget")
        ax.set_xlabel("requests received")
        ax.set_ylabel("MB")
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title(f"RSS over {m.requests:,} requests, {m.paths:,} paths")
    else:
        ax.set_axis_off()
        ax.set_title("memory scenario not run")
    legend = "  ".join(f"{lab} {run.scenarios[k].title.split(') ', 1)[1]}" for lab, k in zip(labels, keys))
    fig.suptitle(f"diff proxy vs nginx, {run.started[:10]}", fontsize=12)
    fig.text(0.5, 0.005, legend, ha="center", fontsize=7.5, wrap=True)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
