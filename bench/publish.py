"""Where a run's output lands: a dated results directory, and the committed docs page."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from bench import chart, report
from bench.results import RunResult

BEGIN = "<!-- bench:results:begin (written by `python -m bench`; edits here are overwritten) -->"
END = "<!-- bench:results:end -->"


def write_results(run: RunResult, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    png = chart.draw(run, out / "bench.png")
    md = out / "bench.md"
    md.write_text(report.markdown(run, chart="bench.png"))
    raw = out / "results.json"
    raw.write_text(json.dumps(run.to_json(), indent=2))
    return {"chart": png, "markdown": md, "json": raw}


def replace_section(page: str, section: str) -> str:
    """The generated section swapped in; the hand-written text around it (profile notes) kept."""
    block = f"{BEGIN}\n{section.rstrip()}\n{END}"
    if BEGIN in page and END in page:
        head, rest = page.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        return head + block + tail
    return page.rstrip() + "\n\n## Latest results\n\n" + block + "\n"


def chart_link(chart: Path, page: Path) -> str:
    """The chart's address as written in `page` (README.md and docs/bench.md differ)."""
    return os.path.relpath(chart, page.parent)


def write_docs(run: RunResult, chart_src: Path, docs_path: Path, chart_dst: Path) -> None:
    chart_dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(chart_src, chart_dst)
    page = docs_path.read_text() if docs_path.exists() else "# Benchmarks\n"
    docs_path.write_text(replace_section(page, report.markdown(run, chart=chart_link(chart_dst, docs_path))))
