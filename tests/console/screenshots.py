"""Screenshots of the console for the docs, taken from the real stack (with the demo's
-ignore.fields) in Chromium.

    .venv/bin/python -m tests.console.screenshots [OUT_DIR]   # default docs/img

writes console-endpoint.png (one endpoint's fields), console-example.png (one example
request with the three responses side by side) and console-latency.png (the candidate's
slower route: its latency verdict and the three distributions).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

import httpx

from tests.console import stack as stk
from topology.model import DEFAULT

DEFAULT_OUT = stk.procs.REPO / "docs" / "img"
ENDPOINT = "GET /json"
SLOW_ENDPOINT = "GET /delay/:id"
FIELD = "body.slideshow.author"
WIDTH = 1440


def _enc(value: str) -> str:
    return quote(value, safe="")


def _fit_height(page, minimum: int = 820, maximum: int = 1700) -> None:
    """Grow the viewport to the page's height so the sticky sidebar spans the picture."""
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": WIDTH, "height": max(minimum, min(maximum, height))})


def send_traffic(stack: stk.Stack) -> None:
    """What the pictures show: the demo's requests, and enough of the slower route for its
    latency verdict, paced so the candidate does not queue behind its 80 ms route."""
    stk.send_demo_traffic(stack, rounds=4)
    stk.send_demo_traffic(stack, rounds=1, paths=("/json", "/ip", "/user-agent"))
    stk.send_demo_traffic(stack, rounds=DEFAULT.latency.min_samples + 5, paths=("/delay/0", "/get"),
                          interval=0.1)
    stk.settle(stack)


def capture(page, stack: stk.Stack, out_dir: Path) -> list[Path]:
    """Save both pictures from `page` (a Playwright page on the console); returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = httpx.get(f"{stack.api_url}/endpoints/{_enc(ENDPOINT)}/fields/{_enc(FIELD)}/results",
                        timeout=5.0).json()["requests"]
    newest = max(results, key=lambda r: r["timestamp_msec"])

    page.set_viewport_size({"width": WIDTH, "height": 620})
    page.goto(f"/#/endpoint/{_enc(ENDPOINT)}")
    page.locator(f'.fields-table tr[data-field="{FIELD}"]').wait_for()
    page.locator("#live-status", has_text="Live").wait_for()
    page.locator(".view-endpoint .examples-table tbody tr").first.wait_for()
    endpoint_png = out_dir / "console-endpoint.png"
    page.screenshot(path=str(endpoint_png))

    page.goto(f"/#/request/{_enc(newest['id'])}")
    page.locator("article.example .col-candidate .line.fld").first.wait_for()
    _fit_height(page)
    example_png = out_dir / "console-example.png"
    page.screenshot(path=str(example_png))

    page.set_viewport_size({"width": WIDTH, "height": 620})
    page.goto(f"/#/endpoint/{_enc(SLOW_ENDPOINT)}")
    page.locator(".latency-panel svg.latency-chart rect.latency-bar").first.wait_for()
    page.locator(".latency-panel .badge-latency-slower").wait_for()
    latency_png = out_dir / "console-latency.png"
    page.screenshot(path=str(latency_png))
    return [endpoint_png, example_png, latency_png]


def main(argv: list[str]) -> int:
    from playwright.sync_api import sync_playwright

    from tests.console.browser import launch

    out_dir = Path(argv[0]) if argv else DEFAULT_OUT
    with tempfile.TemporaryDirectory(prefix="console-shots-") as tmp, \
            stk.running_stack(Path(tmp), ignore_fields=DEFAULT.ignore_fields) as stack:
        send_traffic(stack)
        with sync_playwright() as pw:
            browser = launch(pw)
            try:
                page = browser.new_page(base_url=stack.console_url, device_scale_factor=1)
                for path in capture(page, stack, out_dir):
                    print(path)
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
