"""Load from wrk, with its numbers read from a JSON line its Lua `done` hook prints."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

WRK = "/usr/bin/wrk"
MARK = "BENCH_JSON "

# wrk's `done` runs once in the main thread with the merged statistics of every thread;
# percentiles come back in microseconds.
_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"mean":%.1f,"max":%d}}\n',
    "MARK", summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
""".replace('"MARK"', json.dumps(MARK))

# Paths spread over `paths` distinct values, half templatable (`/items/<n>`, one endpoint
# once numbers are templated) and half not (`/p<n>/x`, one endpoint each until the proxy's
# endpoint cap folds them into an overflow bucket). Threads start at different offsets.
_PATHS = r"""
local nthreads = 0
function setup(thread)
  thread:set("offset", nthreads)
  nthreads = nthreads + 1
end
local i, step
function init(args)
  i = wrk.thread:get("offset") or 0
  step = 7919  -- prime: consecutive requests land far apart in the path space
end
request = function()
  i = (i + step) % PATHS
  local n = math.floor(i / 2)
  local path
  if i % 2 == 0 then path = "/items/" .. n else path = "/p" .. n .. "/x" end
  return wrk.format("GET", path)
end
"""


# The given paths in turn, each thread from its own offset, so their shares are exact.
_PATH_LIST = r"""
local nthreads = 0
function setup(thread)
  thread:set("offset", nthreads * 37)
  nthreads = nthreads + 1
end
local paths = {PATH_LIST}
local i
function init(args)
  i = wrk.thread:get("offset") or 0
end
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
"""


def script(paths: int = 0, path_list: Sequence[str] = ()) -> str:
    if path_list:
        body = _PATH_LIST.replace("PATH_LIST", ", ".join(json.dumps(p) for p in path_list))
    else:
        body = _PATHS.replace("PATHS", str(paths)) if paths else ""
    return body + _DONE


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: dict[str, int]
    connections: int
    threads: int


def parse(output: str, connections: int, threads: int) -> WrkResult:
    for line in output.splitlines():
        if line.startswith(MARK):
            raw = json.loads(line[len(MARK):])
            break
    else:
        raise ValueError(f"wrk printed no {MARK.strip()} line:\n{output[-2000:]}")
    duration = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    return WrkResult(
        requests=raw["requests"], duration_s=duration,
        rps=raw["requests"] / duration if duration > 0 else 0.0,
        p50_ms=lat["p50"] / 1000, p90_ms=lat["p90"] / 1000, p99_ms=lat["p99"] / 1000,
        mean_ms=lat["mean"] / 1000, max_ms=lat["max"] / 1000,
        errors=dict(raw["errors"]), connections=connections, threads=threads,
    )


def run(url: str, duration: float, connections: int, threads: int, workdir: Path,
        paths: int = 0, stop_when: Callable[[], bool] | None = None,
        timeout_s: int = 5, path_list: Sequence[str] = ()) -> WrkResult:
    """Load `url` for `duration` seconds; `stop_when`, polled twice a second, may end it early.
    `path_list`: request these paths in turn instead of `url`'s (`paths`: see `_PATHS`)."""
    threads = max(1, min(threads, connections))
    workdir.mkdir(parents=True, exist_ok=True)
    lua = workdir / ("list.lua" if path_list else f"paths{paths}.lua" if paths else "plain.lua")
    lua.write_text(script(paths, path_list))
    argv = [WRK, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
            "--timeout", f"{timeout_s}s", "--latency", "-s", str(lua), url]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if stop_when is not None:
            while proc.poll() is None:
                time.sleep(0.5)
                if stop_when():
                    # wrk stops its threads on SIGINT and still prints its summary.
                    proc.send_signal(signal.SIGINT)
                    break
        out, _ = proc.communicate(timeout=duration + 60)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}:\n{out[-2000:]}")
    return parse(out, connections, threads)


def version() -> str:
    out = subprocess.run([WRK, "-v"], capture_output=True, text=True)
    first = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""
    return first.split(" [")[0].removeprefix("wrk ").strip()
