"""`python -m bench [--smoke] [--duration S] ...`: run every scenario, print and publish the figures."""

from __future__ import annotations

import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from bench import nginx, publish, report, wrk
from bench.procs import BenchError
from bench.scenarios import run_all
from bench.settings import parse_args


def _check_tools() -> None:
    for tool in (nginx.NGINX, wrk.WRK):
        if not Path(tool).exists():
            raise BenchError(f"{tool} is missing (Debian packages nginx-light and wrk; `make sysdeps`)")


def main(argv: list[str] | None = None) -> int:
    s = parse_args(argv)
    try:
        _check_tools()
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    out = s.out_dir / datetime.now().strftime("%Y-%m-%d_%H%M%S")
    # Process scratch (nginx prefixes, logs, SQLite stores) stays out of the results directory
    # unless a run fails, when the logs are what explains it.
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        run = run_all(s, work, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except BenchError as e:
        print(f"bench: {e}\nbench: logs kept in {work}", file=sys.stderr)
        return 1
    files = publish.write_results(run, out)
    for key in run.profiles:
        # The raw stacks feed flame graph tools (flamegraph.pl, speedscope) later.
        for src, dst in ((work / f"profile-{key}" / "py-spy.txt", out / f"py-spy-{key}.txt"),
                         (work / f"profile-{key}.md", out / f"profile-{key}.md")):
            if src.exists():
                shutil.copyfile(src, dst)
    if s.docs:
        for page in (s.docs_path, s.readme_path):
            publish.write_docs(run, files["chart"], page, s.chart_path)
    print(report.markdown(run))
    print(f"results: {out}" + (f"; docs: {s.docs_path}, {s.readme_path}" if s.docs else ""))
    if run.failures:
        keep = out / "logs"
        shutil.copytree(work, keep, ignore=shutil.ignore_patterns("*.sqlite*", "*.lua"))
        print(f"bench: {len(run.failures)} scenario(s) failed; logs in {keep}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if run.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
