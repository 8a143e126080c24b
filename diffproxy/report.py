"""`python -m diffproxy report`: the CI gate.

Reads a running diff proxy's `/api/1/overview` and `/api/1/info`, prints one block per
endpoint (total, differing, verdict, and the signal fields with their relative and absolute
differences), optionally writes JUnit XML (one testcase per endpoint, a failure for each
endpoint with signal), and exits 1 with `--fail-on-signal` when any endpoint has signal,
2 when the proxy cannot be read, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from .client import ApiClient, ApiError, enc

EXIT_OK, EXIT_SIGNAL, EXIT_ERROR = 0, 1, 2
DEFAULT_URL = "http://127.0.0.1:8888"


class ReportError(Exception):
    """One line for stderr; exit code 2."""


@dataclass(frozen=True)
class FieldResult:
    path: str
    differences: int
    noise: int
    relative: float
    absolute: float
    signal: bool


@dataclass(frozen=True)
class EndpointResult:
    name: str
    total: int
    differences: int
    signal: bool
    fields: tuple[FieldResult, ...]

    @property
    def verdict(self) -> str:
        if self.signal:
            return "SIGNAL"
        return "noise" if self.differences else "same"

    @property
    def signal_fields(self) -> tuple[FieldResult, ...]:
        return tuple(f for f in self.fields if f.signal)

    @property
    def noise_fields(self) -> tuple[FieldResult, ...]:
        return tuple(f for f in self.fields if not f.signal and (f.differences or f.noise))


@dataclass(frozen=True)
class Report:
    url: str
    info: dict[str, Any]
    endpoints: tuple[EndpointResult, ...]

    @property
    def has_signal(self) -> bool:
        return any(e.signal for e in self.endpoints)


# Fetching -----------------------------------------------------------------------------------


def _get_json(base: str, path: str, timeout: float) -> Any:
    try:
        return ApiClient(base, timeout, user_agent="diffproxy-report").get(path)
    except ApiError as exc:
        raise ReportError(str(exc)) from None


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportError(f"unexpected API answer: {what} is {value!r}, not a number")
    return value


def parse_overview(overview: Any) -> tuple[EndpointResult, ...]:
    if not isinstance(overview, dict):
        raise ReportError("unexpected API answer: /api/1/overview is not a JSON object")
    results = []
    for name, entry in overview.items():
        if not isinstance(entry, dict):
            raise ReportError(f"unexpected API answer: endpoint {name!r} is not an object")
        raw_fields = entry.get("fields") or {}
        if not isinstance(raw_fields, dict):
            raise ReportError(f"unexpected API answer: fields of {name!r} is not an object")
        fields = []
        for path, stats in raw_fields.items():
            if not isinstance(stats, dict):
                raise ReportError(f"unexpected API answer: field {path!r} of {name!r} is not an object")
            fields.append(FieldResult(
                path=path,
                differences=int(_number(stats.get("differences", 0), f"{name} {path} differences")),
                noise=int(_number(stats.get("noise", 0), f"{name} {path} noise")),
                relative=float(_number(stats.get("relative_difference", 0.0), f"{name} {path} relative_difference")),
                absolute=float(_number(stats.get("absolute_difference", 0.0), f"{name} {path} absolute_difference")),
                signal=bool(stats.get("signal", False))))
        fields.sort(key=lambda f: (not f.signal, -f.differences, f.path))
        signal = entry.get("signal")
        results.append(EndpointResult(
            name=name,
            total=int(_number(entry.get("total", 0), f"{name} total")),
            differences=int(_number(entry.get("differences", 0), f"{name} differences")),
            # Older servers may omit the endpoint flag; any signal field means signal.
            signal=bool(signal) if signal is not None else any(f.signal for f in fields),
            fields=tuple(fields)))
    results.sort(key=lambda e: (not e.signal, e.name))
    return tuple(results)


def fetch(url: str, timeout: float) -> Report:
    base = url.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ReportError(f"--url must look like http://HOST:PORT, got {url!r}")
    info = _get_json(base, "info", timeout)
    if not isinstance(info, dict):
        raise ReportError("unexpected API answer: /api/1/info is not a JSON object")
    return Report(base, info, parse_overview(_get_json(base, "overview", timeout)))


# Output -------------------------------------------------------------------------------------


def _target_line(info: dict[str, Any]) -> str:
    targets = info.get("targets")
    if not isinstance(targets, dict):
        return ""
    parts = []
    for role in ("primary", "secondary", "candidate"):
        t = targets.get(role)
        if not isinstance(t, dict):
            continue
        state = "healthy" if t.get("healthy") else "unhealthy"
        error = t.get("last_error")
        why = f": {error}" if error and not t.get("healthy") else ""
        parts.append(f"{role} {t.get('address', '?')} ({state}{why})")
    return "targets: " + ", ".join(parts) if parts else ""


def render(report: Report) -> str:
    info = report.info
    thresholds = info.get("thresholds") if isinstance(info.get("thresholds"), dict) else {}
    lines = [f"diff proxy {info.get('name', '?')} at {report.url} (version {info.get('version', '?')}; "
             f"signal when relative > {thresholds.get('relative', '?')}% and absolute > "
             f"{thresholds.get('absolute', '?')}%)"]
    target_line = _target_line(info)
    if target_line:
        lines.append(target_line)
    lines.append("")
    if not report.endpoints:
        lines.append("no requests compared yet")
        return "\n".join(lines) + "\n"

    width = max(len("ENDPOINT"), *(len(e.name) for e in report.endpoints))
    lines.append(f"{'ENDPOINT':<{width}}  {'TOTAL':>7}  {'DIFFERING':>9}  VERDICT")
    for e in report.endpoints:
        lines.append(f"{e.name:<{width}}  {e.total:>7}  {e.differences:>9}  {e.verdict}")
        for f in e.signal_fields:
            lines.append(f"    signal {f.path}: {f.differences} differing vs {f.noise} noise "
                         f"(relative {f.relative:.1f}%, absolute {f.absolute:.1f}%)")
        if e.noise_fields:
            lines.append("    noise  " + ", ".join(f.path for f in e.noise_fields))
    total = sum(e.total for e in report.endpoints)
    flagged = [e for e in report.endpoints if e.signal]
    lines.append("")
    lines.append(f"{len(report.endpoints)} endpoint(s), {total} request(s) compared; "
                 f"{len(flagged)} endpoint(s) with signal"
                 + (": " + ", ".join(e.name for e in flagged) if flagged else ""))
    return "\n".join(lines) + "\n"


def junit(report: Report) -> ET.ElementTree:
    suite = ET.Element("testsuite", {
        "name": f"diffproxy.{report.info.get('name', 'service')}",
        "tests": str(len(report.endpoints)),
        "failures": str(sum(1 for e in report.endpoints if e.signal)),
        "errors": "0", "skipped": "0",
    })
    for e in report.endpoints:
        case = ET.SubElement(suite, "testcase", {"classname": f"diffproxy.{report.info.get('name', 'service')}",
                                                  "name": e.name})
        if e.signal:
            failure = ET.SubElement(case, "failure", {
                "type": "signal",
                "message": f"{e.name}: signal in " + ", ".join(f.path for f in e.signal_fields),
            })
            failure.text = "\n".join(
                f"{f.path}: {f.differences} differing vs {f.noise} noise of {e.total} "
                f"(relative {f.relative:.1f}%, absolute {f.absolute:.1f}%)" for f in e.signal_fields)
        out = ET.SubElement(case, "system-out")
        out.text = f"total {e.total}, differing {e.differences}, verdict {e.verdict}"
    return ET.ElementTree(suite)


# Command line -------------------------------------------------------------------------------


# issue 14: latency verdicts -------------------------------------------------------------------


def latency_verdicts(url: str, timeout: float) -> dict[str, dict]:
    """Endpoint -> its /latency answer (three distributions and the verdict)."""
    base = url.rstrip("/")
    listed = _get_json(base, "endpoints", timeout)
    if not isinstance(listed, dict):
        raise ReportError("unexpected API answer: /api/1/endpoints is not a JSON object")
    out = {}
    for name, entry in listed.items():
        if isinstance(entry, dict) and "latency_verdict" in entry:
            out[name] = _get_json(base, f"endpoints/{enc(name)}/latency", timeout)
    return out


def render_latency(verdicts: dict[str, dict]) -> str:
    """The latency table: slower endpoints first, then p50/p99 per target in ms."""
    if not verdicts:
        return ""
    order = {"slower": 0, "faster": 1, "same": 2, "insufficient": 3}
    rows = sorted(verdicts.items(), key=lambda kv: (order.get(kv[1].get("verdict"), 4), kv[0]))
    width = max(len("ENDPOINT"), *(len(n) for n in verdicts)) + 2

    def ms(target: dict, key: str) -> str:
        value = target.get(key)
        return "-" if value is None else f"{value:.1f}"

    lines = [f"\n{'ENDPOINT':<{width}}{'LATENCY':<14}{'p50 ms (primary/secondary/candidate)':<38}"
             "p99 ms"]
    for name, v in rows:
        p50 = "/".join(ms(v.get(t, {}), "p50_ms") for t in ("primary", "secondary", "candidate"))
        p99 = "/".join(ms(v.get(t, {}), "p99_ms") for t in ("primary", "secondary", "candidate"))
        verdict = str(v.get("verdict", "?"))
        lines.append(f"{name:<{width}}{verdict.upper() if verdict == 'slower' else verdict:<14}"
                     f"{p50:<38}{p99}")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m diffproxy report",
        description="Summarise a running diff proxy's results; the exit code gates CI.")
    parser.add_argument("--url", default=DEFAULT_URL,
                        help=f"the diff proxy's http port (API and console), default {DEFAULT_URL}")
    parser.add_argument("--fail-on-signal", action="store_true",
                        help="exit 1 when any endpoint has signal")
    parser.add_argument("--fail-on-latency", action="store_true",  # issue 14
                        help="exit 1 when any endpoint's latency verdict is slower")
    parser.add_argument("--junit", metavar="FILE", type=Path,
                        help="also write JUnit XML: one testcase per endpoint, a failure for signal")
    parser.add_argument("--timeout", metavar="S", type=float, default=10.0,
                        help="seconds to wait for each API answer (default 10)")
    return parser


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["report"]:
        args_in = args_in[1:]
    parser = _parser()
    try:
        args = parser.parse_args(args_in)
    except SystemExit as exc:  # argparse already printed usage or help
        return EXIT_OK if exc.code == 0 else EXIT_ERROR
    if args.timeout <= 0:
        print("diffproxy report: --timeout must be positive", file=stderr)
        return EXIT_ERROR
    try:
        report = fetch(args.url, args.timeout)
    except ReportError as exc:
        print(f"diffproxy report: {exc}", file=stderr)
        return EXIT_ERROR
    stdout.write(render(report))
    try:  # issue 14
        latency = latency_verdicts(args.url, args.timeout)
    except ReportError as exc:
        if args.fail_on_latency:
            print(f"diffproxy report: {exc}", file=stderr)
            return EXIT_ERROR
        latency = {}
    stdout.write(render_latency(latency))
    if args.junit:
        try:
            args.junit.parent.mkdir(parents=True, exist_ok=True)
            tree = junit(report)
            ET.indent(tree)
            tree.write(args.junit, encoding="utf-8", xml_declaration=True)
        except OSError as exc:
            print(f"diffproxy report: cannot write {args.junit}: {exc.strerror or exc}", file=stderr)
            return EXIT_ERROR
    if args.fail_on_signal and report.has_signal:
        print("diffproxy report: signal found (--fail-on-signal)", file=stderr)
        return EXIT_SIGNAL
    slower = sorted(n for n, v in latency.items() if v.get("verdict") == "slower")
    if args.fail_on_latency and slower:
        print(f"diffproxy report: candidate slower on {', '.join(slower)} (--fail-on-latency)",
              file=stderr)
        return EXIT_SIGNAL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
