"""`python -m diffproxy report`: the CI gate.

Reads a running diff proxy's `/api/1/info`, `/api/1/overview` and `/api/1/endpoints`
(through `client.py`) and prints one block per endpoint: total, differing, verdict, the
signal fields with one example pair each (already redacted by the proxy) and a link into
the console. `--format text|markdown|json|junit`; `--junit FILE` writes JUnit XML as well.

Gating (any of `--fail-on-signal`, `--min-requests`, `--accept`; without them the command
only reports) decides the exit code, first match wins:

    2  usage, connection or API error, or a bad --accept file
    1  signal on a gated endpoint outside --accept, or an accepted difference not seen
    4  the baseline (primary or secondary) failed on a gated endpoint
    3  not enough evidence: fewer than --min-requests overall, or a gated endpoint below it
       (an empty store with --min-requests >= 1 is 3, never 0)
    0  pass

An endpoint's verdict is the proxy's own `verdict` from `/api/1/endpoints` when it sends
one (signal, noise, same, baseline_failure, insufficient), else computed from its fields;
`--min-requests` turns any endpoint below it into `insufficient` either way.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from .client import ApiClient, ApiError, enc

EXIT_OK, EXIT_SIGNAL, EXIT_ERROR, EXIT_INSUFFICIENT, EXIT_BASELINE = 0, 1, 2, 3, 4
DEFAULT_URL = "http://127.0.0.1:8888"
VERDICTS = ("signal", "noise", "same", "baseline_failure", "insufficient")
FORMATS = ("text", "markdown", "json", "junit")
MAX_EXAMPLES = 50  # signal fields whose example pair is fetched (one API call each)
_EXAMPLE_CHARS = 200


class ReportError(Exception):
    """One line for stderr; exit code 2."""


@dataclass(frozen=True)
class Example:
    id: str
    primary: Any
    candidate: Any
    link: str


@dataclass(frozen=True)
class FieldResult:
    path: str
    differences: int
    noise: int
    relative: float
    absolute: float
    signal: bool
    accepted: str | None = None  # the --accept reason
    example: Example | None = None


@dataclass(frozen=True)
class EndpointResult:
    name: str
    total: int
    differences: int
    signal: bool
    fields: tuple[FieldResult, ...]
    server_verdict: str | None = None
    state: str = ""  # the gate's verdict, set by `judge`
    gated: bool = True
    link: str = ""

    @property
    def outcome(self) -> str:
        """The gate's verdict once `judge` ran, the API's before (the demo renders unjudged)."""
        return self.state or self.computed

    @property
    def verdict(self) -> str:
        return "SIGNAL" if self.outcome == "signal" else self.outcome

    @property
    def computed(self) -> str:
        if self.server_verdict in VERDICTS:
            return self.server_verdict
        if self.signal:
            return "signal"
        return "noise" if self.differences else "same"

    @property
    def signal_fields(self) -> tuple[FieldResult, ...]:
        return tuple(f for f in self.fields if f.signal and not f.accepted)

    @property
    def accepted_fields(self) -> tuple[FieldResult, ...]:
        return tuple(f for f in self.fields if f.signal and f.accepted)

    @property
    def noise_fields(self) -> tuple[FieldResult, ...]:
        return tuple(f for f in self.fields if not f.signal and (f.differences or f.noise))


@dataclass(frozen=True)
class Accept:
    endpoint: str
    field: str
    reason: str

    def matches(self, endpoint: str, path: str) -> bool:
        return fnmatch.fnmatchcase(endpoint, self.endpoint) and fnmatch.fnmatchcase(path, self.field)


@dataclass(frozen=True)
class Report:
    url: str
    info: dict[str, Any]
    endpoints: tuple[EndpointResult, ...]
    min_requests: int = 0
    violations: tuple[str, ...] = ()
    unverified: tuple[Accept, ...] = ()
    exit_code: int = EXIT_OK
    reasons: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        return sum(e.total for e in self.endpoints)


# Fetching -----------------------------------------------------------------------------------


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportError(f"unexpected API answer: {what} is {value!r}, not a number")
    return value


def parse_overview(overview: Any, verdicts: dict[str, str] | None = None) -> tuple[EndpointResult, ...]:
    if not isinstance(overview, dict):
        raise ReportError("unexpected API answer: /api/1/overview is not a JSON object")
    verdicts = verdicts or {}
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
        verdict = entry.get("verdict", verdicts.get(name))
        results.append(EndpointResult(
            name=name,
            total=int(_number(entry.get("total", 0), f"{name} total")),
            differences=int(_number(entry.get("differences", 0), f"{name} differences")),
            # Older servers may omit the endpoint flag; any signal field means signal.
            signal=bool(signal) if signal is not None else any(f.signal for f in fields),
            fields=tuple(fields),
            server_verdict=verdict if verdict in VERDICTS else None))
    results.sort(key=lambda e: (not e.signal, e.name))
    return tuple(results)


def _verdicts(endpoints: Any) -> dict[str, str]:
    """Per-endpoint `verdict` of /api/1/endpoints, where the proxy sends one."""
    if not isinstance(endpoints, dict):
        raise ReportError("unexpected API answer: /api/1/endpoints is not a JSON object")
    return {name: e["verdict"] for name, e in endpoints.items()
            if isinstance(e, dict) and isinstance(e.get("verdict"), str)}


def fetch(url: str, timeout: float) -> Report:
    base = url.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ReportError(f"--url must look like http://HOST:PORT, got {url!r}")
    api = ApiClient(base, timeout, user_agent="diffproxy-report")
    try:
        info = api.info()
        if not isinstance(info, dict):
            raise ReportError("unexpected API answer: /api/1/info is not a JSON object")
        overview = api.overview()
        verdicts = _verdicts(api.endpoints())
    except ApiError as exc:
        raise ReportError(str(exc)) from None
    return Report(base, info, parse_overview(overview, verdicts))


def console_link(console: str, endpoint: str, path: str | None = None, request_id: str | None = None) -> str:
    link = f"{console.rstrip('/')}/#/endpoint/{enc(endpoint)}"
    if path:
        link += f"/field/{enc(path)}"
        if request_id:
            link += f"/request/{enc(request_id)}"
    return link


def with_examples(report: Report, console: str, timeout: float) -> Report:
    """One example pair and a console link for each unaccepted signal field."""
    api = ApiClient(report.url, timeout, user_agent="diffproxy-report")
    budget = MAX_EXAMPLES
    endpoints = []
    for e in report.endpoints:
        fields = []
        for f in e.fields:
            if f.signal and not f.accepted and budget > 0:
                budget -= 1
                example = None
                try:
                    kept = api.results(e.name, f.path, include_request=False).get("requests") or []
                except (ApiError, AttributeError):
                    kept = []
                for r in kept:
                    d = (r.get("differences") or {}).get(f.path) if isinstance(r, dict) else None
                    if isinstance(d, dict):
                        rid = str(r.get("id", ""))
                        example = Example(rid, d.get("left"), d.get("right"),
                                          console_link(console, e.name, f.path, rid))
                        break
                if example is None:
                    example = Example("", None, None, console_link(console, e.name, f.path))
                f = replace(f, example=example)
            fields.append(f)
        endpoints.append(replace(e, fields=tuple(fields), link=console_link(console, e.name)))
    return replace(report, endpoints=tuple(endpoints))


# The gate ----------------------------------------------------------------------------------


def load_accept(path: Path) -> tuple[Accept, ...]:
    """`[{endpoint, field, reason}, ...]` (or `{accept: [...]}`), YAML or JSON; globs allowed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"--accept: cannot read {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml  # only for --accept files; JSON is YAML too

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parser error is the user's file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ReportError(f"--accept: {path} is not valid YAML/JSON: {first}") from None
    if isinstance(data, dict) and set(data) == {"accept"}:
        data = data["accept"]
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ReportError(f"--accept: {path} must hold a list of {{endpoint, field, reason}} "
                          "(or a mapping with one key, accept)")
    out = []
    for n, entry in enumerate(data, start=1):
        if not isinstance(entry, dict):
            raise ReportError(f"--accept: {path} entry {n} is not a mapping")
        unknown = set(entry) - {"endpoint", "field", "reason"}
        if unknown:
            raise ReportError(f"--accept: {path} entry {n}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        values = {}
        for key in ("endpoint", "field", "reason"):
            value = entry.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ReportError(f"--accept: {path} entry {n}: {key!r} must be a non-empty string")
            values[key] = value.strip()
        out.append(Accept(**values))
    return tuple(out)


def judge(report: Report, min_requests: int = 0, accepts: Sequence[Accept] = (),
          endpoint_globs: Sequence[str] = (), gating: bool = True) -> Report:
    """Each endpoint's verdict under the gate's options, and the exit code."""
    used: set[Accept] = set()
    verified: set[Accept] = set()
    endpoints = []
    for e in report.endpoints:
        gated = not endpoint_globs or any(fnmatch.fnmatchcase(e.name, g) for g in endpoint_globs)
        enough = e.total >= max(min_requests, 1)
        fields = []
        for f in e.fields:
            for a in accepts:
                if a.matches(e.name, f.path):
                    if enough:
                        verified.add(a)
                    if f.signal:
                        used.add(a)
                        f = replace(f, accepted=a.reason)
                    break
            fields.append(f)
        for a in accepts:  # an endpoint seen with enough evidence can verify an entry
            if enough and fnmatch.fnmatchcase(e.name, a.endpoint):
                verified.add(a)
        e = replace(e, fields=tuple(fields), gated=gated)
        state = e.computed
        if e.total < min_requests:
            state = "insufficient"
        elif state == "signal" and not e.signal_fields and e.accepted_fields:
            state = "accepted"
        endpoints.append(replace(e, state=state))
    violations = tuple(
        f"accepted difference not seen: {a.endpoint} {a.field} ({a.reason})"
        for a in accepts if a in verified and a not in used)
    unverified = tuple(a for a in accepts if a not in verified)
    gated = [e for e in endpoints if e.gated]
    total = sum(e.total for e in endpoints)
    reasons: list[str] = []
    code = EXIT_OK
    if gating:
        signal = [e.name for e in gated if e.state == "signal"]
        baseline = [e.name for e in gated if e.state == "baseline_failure"]
        thin = [e.name for e in gated if e.state == "insufficient"]
        if signal or violations:
            code = EXIT_SIGNAL
            if signal:
                reasons.append("signal on " + ", ".join(signal))
            reasons.extend(violations)
        elif baseline:
            code = EXIT_BASELINE
            reasons.append("the baseline (primary or secondary) failed on " + ", ".join(baseline))
        elif total < min_requests or thin:
            code = EXIT_INSUFFICIENT
            if total < min_requests:
                reasons.append(f"not enough evidence: {total} request(s) compared, "
                               f"--min-requests is {min_requests}")
            if thin:
                reasons.append(f"not enough evidence (fewer than {min_requests} requests) on "
                               + ", ".join(thin))
    return replace(report, endpoints=tuple(endpoints), min_requests=min_requests,
                   violations=violations, unverified=unverified, exit_code=code,
                   reasons=tuple(reasons))


# Output -------------------------------------------------------------------------------------


def _value(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    return text if len(text) <= _EXAMPLE_CHARS else text[:_EXAMPLE_CHARS - 1] + "…"


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


def _head(report: Report) -> str:
    info = report.info
    thresholds = info.get("thresholds") if isinstance(info.get("thresholds"), dict) else {}
    return (f"diff proxy {info.get('name', '?')} at {report.url} (version {info.get('version', '?')}; "
            f"signal when relative > {thresholds.get('relative', '?')}% and absolute > "
            f"{thresholds.get('absolute', '?')}%)")


def _summary(report: Report) -> str:
    flagged = [e for e in report.endpoints if e.outcome == "signal"]
    return (f"{len(report.endpoints)} endpoint(s), {report.total} request(s) compared; "
            f"{len(flagged)} endpoint(s) with signal"
            + (": " + ", ".join(e.name for e in flagged) if flagged else ""))


def render(report: Report) -> str:
    lines = [_head(report)]
    target_line = _target_line(report.info)
    if target_line:
        lines.append(target_line)
    lines.append("")
    if not report.endpoints:
        lines.append("no requests compared yet")
    else:
        width = max(len("ENDPOINT"), *(len(e.name) for e in report.endpoints))
        lines.append(f"{'ENDPOINT':<{width}}  {'TOTAL':>7}  {'DIFFERING':>9}  VERDICT")
        for e in report.endpoints:
            lines.append(f"{e.name:<{width}}  {e.total:>7}  {e.differences:>9}  {e.verdict}"
                         + ("" if e.gated else "  (not gated)"))
            for f in e.signal_fields:
                lines.append(f"    signal {f.path}: {f.differences} differing vs {f.noise} noise "
                             f"(relative {f.relative:.1f}%, absolute {f.absolute:.1f}%)")
                if f.example is not None:
                    if f.example.id:
                        lines.append(f"        primary   {_value(f.example.primary)}")
                        lines.append(f"        candidate {_value(f.example.candidate)}")
                    lines.append(f"        {f.example.link}")
            for f in e.accepted_fields:
                lines.append(f"    accepted {f.path}: {f.accepted}")
            if e.noise_fields:
                lines.append("    noise  " + ", ".join(f.path for f in e.noise_fields))
        lines.append("")
        lines.append(_summary(report))
    for a in report.unverified:
        lines.append(f"accepted, not verified (no endpoint with enough requests): {a.endpoint} {a.field}")
    for reason in report.reasons:
        lines.append(f"gate: {reason}")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'").replace("\n", " ")


def render_markdown(report: Report) -> str:
    status = {EXIT_OK: "✅ pass", EXIT_SIGNAL: "❌ signal", EXIT_BASELINE: "⚠️ baseline failed",
              EXIT_INSUFFICIENT: "⚠️ not enough evidence"}.get(report.exit_code, "?")
    lines = [f"### diffproxy: {status}", "", _md(_head(report)), ""]
    if not report.endpoints:
        lines.append("No requests compared yet.")
    else:
        lines += ["| endpoint | total | differing | verdict |", "|---|---:|---:|---|"]
        for e in report.endpoints:
            name = f"[`{_md(e.name)}`]({e.link})" if e.link else f"`{_md(e.name)}`"
            lines.append(f"| {name} | {e.total} | {e.differences} | {e.verdict} |")
        signal = [(e, f) for e in report.endpoints for f in e.signal_fields]
        if signal:
            lines += ["", "**Signal fields**", ""]
            for e, f in signal:
                lines.append(f"- `{_md(e.name)}` `{_md(f.path)}`: {f.differences} differing vs "
                             f"{f.noise} noise (relative {f.relative:.1f}%, absolute {f.absolute:.1f}%)")
                if f.example is not None:
                    if f.example.id:
                        lines.append(f"  - primary `{_md(_value(f.example.primary))}` → candidate "
                                     f"`{_md(_value(f.example.candidate))}`")
                    lines.append(f"  - [open in the console]({f.example.link})")
        accepted = [(e, f) for e in report.endpoints for f in e.accepted_fields]
        if accepted:
            lines += ["", "**Accepted differences**", ""]
            lines += [f"- `{_md(e.name)}` `{_md(f.path)}`: {_md(f.accepted or '')}" for e, f in accepted]
        lines += ["", _md(_summary(report))]
    for reason in report.reasons:
        lines.append(f"- gate: {_md(reason)}")
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    doc = {
        "url": report.url, "exit_code": report.exit_code, "reasons": list(report.reasons),
        "min_requests": report.min_requests, "total": report.total,
        "endpoints": [{
            "name": e.name, "total": e.total, "differences": e.differences,
            "verdict": e.outcome, "gated": e.gated, "link": e.link,
            "signal_fields": [{**{k: v for k, v in asdict(f).items() if k not in ("accepted", "example")},
                               "example": asdict(f.example) if f.example else None}
                              for f in e.signal_fields],
            "accepted_fields": [{"path": f.path, "reason": f.accepted} for f in e.accepted_fields],
            "noise_fields": [f.path for f in e.noise_fields],
        } for e in report.endpoints],
        "violations": list(report.violations),
        "unverified": [asdict(a) for a in report.unverified],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def junit(report: Report) -> ET.ElementTree:
    name = f"diffproxy.{report.info.get('name', 'service')}"
    failing = ("signal", "baseline_failure", "insufficient")
    suite = ET.Element("testsuite", {
        "name": name, "tests": str(len(report.endpoints)),
        "failures": str(sum(1 for e in report.endpoints if e.gated and e.outcome in failing)),
        "errors": "0", "skipped": str(sum(1 for e in report.endpoints if not e.gated)),
    })
    for e in report.endpoints:
        case = ET.SubElement(suite, "testcase", {"classname": name, "name": e.name})
        state = e.outcome
        if not e.gated:
            ET.SubElement(case, "skipped", {"message": "not gated (--endpoint)"})
        elif state == "signal":
            failure = ET.SubElement(case, "failure", {
                "type": "signal",
                "message": f"{e.name}: signal in " + ", ".join(f.path for f in e.signal_fields),
            })
            lines = []
            for f in e.signal_fields:
                lines.append(f"{f.path}: {f.differences} differing vs {f.noise} noise of {e.total} "
                             f"(relative {f.relative:.1f}%, absolute {f.absolute:.1f}%)")
                if f.example is not None:
                    if f.example.id:
                        lines.append(f"  primary {_value(f.example.primary)} candidate "
                                     f"{_value(f.example.candidate)}")
                    lines.append(f"  {f.example.link}")
            failure.text = "\n".join(lines)
        elif state in ("baseline_failure", "insufficient"):
            ET.SubElement(case, "failure", {"type": state, "message": f"{e.name}: {state} "
                                            f"({e.total} request(s))"})
        out = ET.SubElement(case, "system-out")
        accepted = "".join(f"; accepted {f.path}: {f.accepted}" for f in e.accepted_fields)
        out.text = f"total {e.total}, differing {e.differences}, verdict {e.verdict}{accepted}"
    return ET.ElementTree(suite)


def junit_text(report: Report) -> str:
    tree = junit(report)
    ET.indent(tree)
    return ET.tostring(tree.getroot(), encoding="unicode", xml_declaration=True) + "\n"


RENDERERS = {"text": render, "markdown": render_markdown, "json": render_json, "junit": junit_text}


# Command line -------------------------------------------------------------------------------


# issue 14: latency verdicts -------------------------------------------------------------------


def latency_verdicts(url: str, timeout: float) -> dict[str, dict]:
    """Endpoint -> its /latency answer (three distributions and the verdict)."""
    api = ApiClient(url.rstrip("/"), timeout, user_agent="diffproxy-report")
    try:
        listed = api.endpoints()
        if not isinstance(listed, dict):
            raise ReportError("unexpected API answer: /api/1/endpoints is not a JSON object")
        judged = [name for name, entry in listed.items()
                  if isinstance(entry, dict) and "latency_verdict" in entry]
        if listed and not judged:
            raise ReportError("/api/1/endpoints carries no latency_verdict (a diff proxy "
                              "without latency diffing?)")
        return {name: api.get(f"endpoints/{enc(name)}/latency") for name in judged}
    except ApiError as exc:
        raise ReportError(str(exc)) from None


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
        description="Summarise a running diff proxy's results; the exit code gates CI "
                    "(0 pass, 1 signal, 2 error, 3 not enough evidence, 4 baseline failed).")
    parser.add_argument("--url", default=DEFAULT_URL,
                        help=f"the diff proxy's http port (API and console), default {DEFAULT_URL}")
    parser.add_argument("--fail-on-signal", action="store_true",
                        help="gate: exit 1 when a gated endpoint has signal")
    parser.add_argument("--fail-on-latency", action="store_true",  # issue 14
                        help="exit 1 when any endpoint's latency verdict is slower")
    parser.add_argument("--min-requests", metavar="N", type=int, default=0,
                        help="gate: at least N requests overall and per endpoint (else exit 3)")
    parser.add_argument("--accept", metavar="FILE", type=Path,
                        help="gate: YAML/JSON list of {endpoint, field, reason}: intended differences")
    parser.add_argument("--endpoint", metavar="GLOB", action="append", default=[],
                        help="gate only endpoints matching GLOB (repeatable; default: all)")
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    parser.add_argument("--junit", metavar="FILE", type=Path,
                        help="also write JUnit XML: one testcase per endpoint, a failure for signal")
    parser.add_argument("--console-url", metavar="URL",
                        help="the console's public URL for links (default: -rootUrl, else --url)")
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
    if args.min_requests < 0:
        print("diffproxy report: --min-requests must not be negative", file=stderr)
        return EXIT_ERROR
    try:
        accepts = load_accept(args.accept) if args.accept else ()
        report = fetch(args.url, args.timeout)
        gating = bool(args.fail_on_signal or args.min_requests or args.accept)
        report = judge(report, args.min_requests, accepts, args.endpoint, gating)
        console = args.console_url or report.info.get("root_url") or report.url
        if not isinstance(console, str) or not console.strip():
            console = report.url
        report = with_examples(report, console.strip().strip("'\""), args.timeout)
    except ReportError as exc:
        print(f"diffproxy report: {exc}", file=stderr)
        return EXIT_ERROR
    stdout.write(RENDERERS[args.format](report))
    try:  # issue 14
        latency = latency_verdicts(args.url, args.timeout)
    except ReportError as exc:
        if args.fail_on_latency:
            print(f"diffproxy report: {exc}", file=stderr)
            return EXIT_ERROR
        latency = {}
    if args.format in ("text", "markdown"):  # json and junit stay one document
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
    for reason in report.reasons:
        print(f"diffproxy report: {reason}", file=stderr)
    if args.fail_on_signal and report.exit_code == EXIT_SIGNAL:
        print("diffproxy report: signal found (--fail-on-signal)", file=stderr)
        return EXIT_SIGNAL
    if report.exit_code != EXIT_OK:
        return report.exit_code
    slower = sorted(n for n, v in latency.items() if v.get("verdict") == "slower")
    if args.fail_on_latency and slower:
        print(f"diffproxy report: candidate slower on {', '.join(slower)} (--fail-on-latency)",
              file=stderr)
        return EXIT_SIGNAL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
