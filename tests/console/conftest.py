"""Fixtures for the console's browser tests: the real stack on loopback, Debian's Chromium
driven by Playwright, and a page that fails the test on any console error."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.console import stack as stk
from tests.console.browser import CHROMIUM, VIEWPORT, launch


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[stk.Stack]:
    with stk.running_stack(tmp_path_factory.mktemp("console-stack")) as running:
        yield running


@dataclass
class Traffic:
    sent: int
    endpoints: dict = field(default_factory=dict)


@pytest.fixture
def traffic(stack) -> Traffic:
    """Fresh results for each test: clear, send the demo requests, wait until recorded."""
    stk.clear(stack)
    sent = stk.send_demo_traffic(stack)
    return Traffic(sent=sent, endpoints=stk.settle(stack))


# Module scope, not session: Playwright's sync API keeps an asyncio loop running on the main
# thread while it is open, which would break every asyncio test collected after this folder.
@pytest.fixture(scope="module")
def browser():
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run scripts/system-deps.sh (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch(pw)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, stack):
    context = browser.new_context(viewport=VIEWPORT, base_url=stack.console_url)
    context.set_default_timeout(10_000)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda msg: problems.append(f"console.{msg.type}: {msg.text}")
          if msg.type in ("error", "warning") else None)
    pg.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    pg.problems = problems
    yield pg
    context.close()
    assert problems == [], f"the page reported errors: {problems}"
