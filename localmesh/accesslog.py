"""Read what a backend received from its access log (gunicorn's or nginx's, same request line)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from toolbox.ready import PROBE_USER_AGENT

_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[0-9.]+" (?P<status>\d{3})')
_HOST = re.compile(r'host="(?P<host>[^"]*)"')


@dataclass(frozen=True)
class Hit:
    method: str
    target: str
    status: int
    host: str | None


def parse(text: str) -> list[Hit]:
    hits: list[Hit] = []
    for line in text.splitlines():
        if PROBE_USER_AGENT in line:
            continue
        match = _LINE.search(line)
        if not match:
            continue
        host = _HOST.search(line)
        hits.append(Hit(match["method"], match["target"], int(match["status"]),
                        host["host"] if host else None))
    return hits


def read(path: Path) -> list[Hit]:
    try:
        return parse(path.read_text(errors="replace"))
    except FileNotFoundError:
        return []
