"""Sampling profiles of the proxy under load (py-spy, attached by pid) boiled down to tables."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.settings import REPO

PY_SPY = REPO / ".venv" / "bin" / "py-spy"
_LINE = re.compile(r"\s*\(([^()]*?)(?::\d+)?\)\s*$")


@dataclass(frozen=True)
class Profile:
    samples: int
    self_pct: list[tuple[str, float]] = field(default_factory=list)       # leaf frames
    inclusive_pct: list[tuple[str, float]] = field(default_factory=list)  # anywhere on the stack
    by_area_pct: list[tuple[str, float]] = field(default_factory=list)    # leaf frame's package


def start(pid: int, output: Path, seconds: float, rate: int = 100) -> subprocess.Popen:
    # --gil keeps only samples of the thread holding the GIL: where Python CPU goes. Without
    # it, executor threads parked on a lock are reported as busy and drown the picture.
    # Blocking sampling (the default) keeps stacks consistent at a few percent of throughput.
    argv = [str(PY_SPY), "record", "--format", "raw", "--output", str(output), "--pid", str(pid),
            "--rate", str(rate), "--duration", str(max(1, round(seconds))), "--gil",
            "--subprocesses"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _function(frame: str) -> str:
    """`handle (diffproxy/proxy.py:88)` -> `handle (diffproxy/proxy.py)`: lines of one function merge."""
    return _LINE.sub(lambda m: f" ({m.group(1)})", frame).strip()


def _area(frame: str) -> str:
    m = _LINE.search(frame)
    if not m:
        return frame
    path = m.group(1)
    if "/" not in path:
        return path.removesuffix(".py")
    head, rest = path.split("/", 1)
    if head == "diffproxy":
        return "diffproxy/" + rest.split("/")[0].removesuffix(".py")
    return head


def _is_meta(frame: str) -> bool:
    # py-spy prefixes stacks with process and thread frames when several are sampled.
    return frame.startswith(("process ", "thread ("))


def summarise(raw: str, top: int = 15) -> Profile:
    self_c: Counter[str] = Counter()
    incl_c: Counter[str] = Counter()
    area_c: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not _is_meta(f)]
        if not frames:
            continue
        n = int(count)
        total += n
        self_c[_function(frames[-1])] += n
        area_c[_area(frames[-1])] += n
        for fn in {_function(f) for f in frames}:
            incl_c[fn] += n

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, 100.0 * v / total) for k, v in c.most_common(top)] if total else []

    return Profile(total, pct(self_c), pct(incl_c), pct(area_c))


def render(name: str, p: Profile) -> str:
    lines = [f"### Profile: {name} ({p.samples} samples while holding the GIL)", ""]
    for title, rows in (("By package (leaf frame)", p.by_area_pct),
                        ("Self time", p.self_pct),
                        ("Inclusive time", p.inclusive_pct)):
        lines += [f"**{title}**", "", "| % | function |", "|---:|---|"]
        lines += [f"| {v:.1f} | `{k}` |" for k, v in rows]
        lines.append("")
    return "\n".join(lines)
