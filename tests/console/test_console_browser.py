"""The diff console in a real browser (Debian's Chromium via Playwright) against the real
proxy and real httpbin backends on loopback.

Expected values come from the API the page reads, never from constants, except the demo's
premise itself: the candidate changes `body.slideshow.author` on `GET /json` to
"Yours Truly, v2" (candidate/app.py).
"""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

from candidate.app import CANDIDATE_VALUE
from diffproxy.console import CONTENT_SECURITY_POLICY
from tests.console import stack as stk
from tests.support.diffapi import enc

SIGNAL_ENDPOINT = "GET /json"
SIGNAL_FIELD = "body.slideshow.author"
NOISE_ENDPOINT = "GET /uuid"
NOISE_FIELD = "body.uuid"
VERDICT_LABEL = {"signal": "signal", "noise": "noise only", "same": "no difference",
                 "baseline_failure": "baseline failed", "insufficient": "insufficient"}


def api(stack, path: str):
    response = httpx.get(f"{stack.api_url}/{path}", timeout=5.0)
    response.raise_for_status()
    return response.json()


def verdict(ep: dict) -> str:
    return ep["verdict"]  # the API decides; the console shows it


def worst_first(overview: dict) -> list[str]:
    rank = {"signal": 0, "baseline_failure": 1, "insufficient": 2, "noise": 3, "same": 4}

    def key(item):
        name, ep = item
        share = ep["differences"] / ep["total"] if ep["total"] else 0.0
        return (rank[verdict(ep)], -share, -ep["total"], name)

    return [name for name, _ in sorted(overview.items(), key=key)]


def sidebar_names(page) -> list[str]:
    return page.locator("#endpoint-list li").evaluate_all("els => els.map(e => e.dataset.name)")


def wait_for_poll(page) -> None:
    """Wait until the page has refreshed itself once more from the API."""
    before = page.locator("#live-status").inner_text()
    expect(page.locator("#live-status")).not_to_have_text(before, timeout=8_000)


def newest_example(stack, endpoint: str, field: str) -> dict:
    results = api(stack, f"endpoints/{enc(endpoint)}/fields/{enc(field)}/results")["requests"]
    assert results, f"the proxy kept no example for {endpoint} {field}"
    return max(results, key=lambda r: r["timestamp_msec"])


def test_header_and_endpoint_list_worst_first(page, stack, traffic):
    page.goto("/")
    overview = api(stack, "overview")
    info = api(stack, "info")
    items = page.locator("#endpoint-list li")
    expect(items).to_have_count(len(overview))

    names = sidebar_names(page)
    assert names == worst_first(overview)
    assert names[0] == SIGNAL_ENDPOINT, "the demo's only signal should lead the list"
    for name in names:
        ep = overview[name]
        row = page.locator("#endpoint-list li").nth(names.index(name))
        expect(row.locator(".badge")).to_have_text(VERDICT_LABEL[verdict(ep)], ignore_case=True)
        expect(row.locator(".ep-counts")).to_have_text(f"{ep['differences']} of {ep['total']} differ")
        share = 100 * ep["differences"] / ep["total"]
        expect(row.locator(".ep-pct")).to_have_text(f"{share:.1f}%")

    expect(page.locator("#service-name")).to_have_text(info["name"])
    for role in ("primary", "secondary", "candidate"):
        target = page.locator(f'#targets li[data-role="{role}"]')
        expect(target.locator(".addr")).to_have_text(info["targets"][role]["address"])
        expect(target.locator(".dot")).to_have_class(re.compile(r"\bdot-up\b"))
    thresholds = info["thresholds"]
    expect(page.locator("#thresholds")).to_have_text(
        f"relative > {thresholds['relative']:g}% · absolute > {thresholds['absolute']:g}%")
    assert info["last_reset"] is not None  # the traffic fixture cleared just now
    expect(page.locator("#last-reset")).to_have_text(re.compile(r"just now|\d+ s ago"))

    search = page.locator("#endpoint-filter")
    search.fill("uuid")
    expect(page.locator("#endpoint-list li:visible")).to_have_count(1)
    expect(page.locator("#endpoint-list li:visible .ep-name")).to_have_text(NOISE_ENDPOINT)
    search.fill("no-such-endpoint")
    expect(page.locator("#endpoint-list li:visible")).to_have_count(0)
    expect(page.locator("#endpoint-nomatch")).to_be_visible()
    search.fill("")
    expect(page.locator("#endpoint-list li:visible")).to_have_count(len(overview))


def test_signal_field_and_highlighted_example(page, stack, traffic):
    page.goto("/")
    page.locator("#endpoint-list a", has_text=SIGNAL_ENDPOINT).click()
    expect(page).to_have_url(re.compile(re.escape(f"#/endpoint/{enc(SIGNAL_ENDPOINT)}") + "$"))

    stats = api(stack, f"endpoints/{enc(SIGNAL_ENDPOINT)}/stats?exclude_noise=false")
    rows = page.locator(".fields-table tbody tr")
    expect(rows).to_have_count(len(stats["fields"]))
    first = rows.first
    expect(first).to_have_attribute("data-field", SIGNAL_FIELD)
    expect(first.locator(".badge")).to_have_text("signal")
    field = stats["fields"][SIGNAL_FIELD]
    expect(first.locator("td.num").nth(0)).to_have_text(str(field["differences"]))
    expect(first.locator("td.num").nth(1)).to_have_text(str(field["noise"]))
    # The endpoint page previews the worst field's newest examples.
    latest = page.locator(".view-endpoint .examples-table tbody tr")
    expect(latest.first.locator("td.right")).to_have_text(f'"{CANDIDATE_VALUE}"')

    first.locator("a").click()
    expect(page).to_have_url(re.compile(re.escape(f"/field/{enc(SIGNAL_FIELD)}") + "$"))
    results = api(stack, f"endpoints/{enc(SIGNAL_ENDPOINT)}/fields/{enc(SIGNAL_FIELD)}/results")
    examples = page.locator(".examples-table tbody tr")
    expect(examples).to_have_count(len(results["requests"]))
    expect(examples.first.locator("td.right")).to_have_text(f'"{CANDIDATE_VALUE}"')

    examples.first.locator("a").click()
    example = page.locator("article.example")
    expect(example).to_be_visible()
    example_id = example.get_attribute("data-id")
    expect(page).to_have_url(re.compile(re.escape(f"/request/{example_id}") + "$"))
    roles = example.locator(".columns .col").evaluate_all("els => els.map(e => e.dataset.role)")
    assert roles == ["primary", "secondary", "candidate"]

    changed = example.locator(".col-candidate .line", has_text=CANDIDATE_VALUE)
    expect(changed).to_have_count(1)
    expect(changed).to_have_class(re.compile(r"\badd\b.*\bfld\b"))
    expect(changed).to_have_attribute("data-path", SIGNAL_FIELD)
    primary = api(stack, f"requests/{example_id}")["primary"]["body"]["slideshow"]["author"]
    original = example.locator(".col-primary .line", has_text=f'"author": "{primary}"')
    expect(original).to_have_class(re.compile(r"\bdel\b.*\bfld\b"))
    # Secondary runs the primary's code: its author line is no noise.
    expect(example.locator(".col-secondary .line", has_text='"author"')).not_to_have_class(
        re.compile(r"\bnoise\b"))
    # Only the changed field is highlighted in the candidate's body.
    expect(example.locator(".col-candidate .line.add")).to_have_count(1)

    # The demo traffic carries a bearer token; the page only ever sees the API's mask.
    expect(example.locator(".kv tr", has_text="authorization").locator("td")).to_have_text("<redacted>")
    assert "demo-secret-token" not in page.content()


def test_noise_toggle_shows_and_hides_noise_fields(page, stack, traffic):
    page.goto(f"/#/endpoint/{enc(NOISE_ENDPOINT)}")
    row = page.locator(f'.fields-table tr[data-field="{NOISE_FIELD}"]')
    expect(row).to_be_visible()
    expect(row.locator(".badge")).to_have_text("noise")
    toggle = page.locator("#noise-toggle")
    expect(toggle).to_be_checked()

    page.locator("label.toggle", has_text="Show noise").click()
    expect(toggle).not_to_be_checked()
    expect(row).to_have_count(0)
    expect(page.locator(".view-endpoint .empty-state")).to_contain_text("noise field")
    signal_only = api(stack, f"endpoints/{enc(NOISE_ENDPOINT)}/stats?exclude_noise=true")["fields"]
    assert NOISE_FIELD not in signal_only

    wait_for_poll(page)  # a refresh must not bring the hidden field back
    expect(row).to_have_count(0)
    page.reload()  # the reader's choice outlives a reload
    expect(page.locator("#noise-toggle")).not_to_be_checked()
    expect(page.locator(".view-endpoint .empty-state")).to_contain_text("noise field")
    expect(row).to_have_count(0)

    page.locator("label.toggle", has_text="Show noise").click()
    expect(row).to_be_visible()


def test_numbers_are_honest_noise_is_muted_and_the_headline_splits_signal(page, stack, traffic):
    """Noise fields never show percentages in the alarming style; the headline counts
    differing requests on signal endpoints apart from noise-only ones."""
    page.goto(f"/#/endpoint/{enc(NOISE_ENDPOINT)}")
    row = page.locator(f'.fields-table tr[data-field="{NOISE_FIELD}"]')
    expect(row.locator(".badge")).to_have_text("noise")
    cells = row.locator("td.num")
    for i in (2, 3):  # relative, absolute
        expect(cells.nth(i)).to_have_class(re.compile(r"\bmuted\b"))
        expect(cells.nth(i)).not_to_have_class(re.compile(r"\bover\b"))
    expect(page.locator(".fields-table tr.row-noise td.over")).to_have_count(0)

    page.goto("/")
    overview = api(stack, "overview")
    on_signal = sum(e["differences"] for e in overview.values() if e["verdict"] == "signal")
    noise_only = sum(e["differences"] for e in overview.values() if e["verdict"] != "signal")
    assert on_signal and noise_only  # the demo has both
    tiles = page.locator(".stats .stat")
    signal_tile = tiles.filter(has_text="Differing, on signal endpoints")
    expect(signal_tile.locator(".stat-value")).to_contain_text(f"{on_signal} (")
    expect(tiles.filter(has_text="Differing, noise only").locator(".stat-value")).to_have_text(str(noise_only))
    expect(tiles.filter(has_text="Baseline failures").locator(".stat-value")).to_have_text(
        str(sum(e["baseline_failures"] for e in overview.values())))


def test_refresh_updates_in_place_without_losing_the_readers_place(page, stack, traffic):
    example = newest_example(stack, SIGNAL_ENDPOINT, SIGNAL_FIELD)
    page.goto(f"/#/endpoint/{enc(SIGNAL_ENDPOINT)}/field/{enc(SIGNAL_FIELD)}/request/{example['id']}")
    article = page.locator("article.example")
    expect(article).to_be_visible()
    table_rows = page.locator(".examples-table tbody tr")
    before_rows = table_rows.count()
    article.evaluate("el => { el.__kept = true; }")
    page.locator(".examples-table tbody tr").first.evaluate("el => { el.__kept = true; }")
    page.evaluate("window.scrollTo(0, 500)")
    assert page.evaluate("window.scrollY") > 0
    top_before = article.bounding_box()["y"]

    sent = stk.send_demo_traffic(stack, rounds=2, paths=("/json", "/ip"))
    counts = stk.settle(stack)
    assert sum(ep["total"] for ep in counts.values()) == traffic.sent + sent

    new_row = page.locator('#endpoint-list li[data-name="GET /ip"]')
    expect(new_row).to_have_count(1, timeout=8_000)
    json_counts = counts[SIGNAL_ENDPOINT]
    expect(page.locator(f'#endpoint-list li[data-name="{SIGNAL_ENDPOINT}"] .ep-counts')).to_have_text(
        f"{json_counts['differences']} of {json_counts['total']} differ")
    kept = len(api(stack, f"endpoints/{enc(SIGNAL_ENDPOINT)}/fields/{enc(SIGNAL_FIELD)}/results")["requests"])
    assert kept > before_rows
    expect(table_rows).to_have_count(kept)

    assert article.evaluate("el => el.__kept === true"), "the open example was re-rendered"
    # Rows arrived above the example; what the reader looks at must not jump.
    assert abs(article.bounding_box()["y"] - top_before) <= 1, "the example moved on screen"
    assert page.evaluate(
        "() => [...document.querySelectorAll('.examples-table tbody tr')].some(r => r.__kept)"), \
        "existing example rows were rebuilt instead of updated"


def test_deep_links_reopen_the_same_view(page, stack, traffic):
    example = newest_example(stack, SIGNAL_ENDPOINT, SIGNAL_FIELD)
    link = f"/#/endpoint/{enc(SIGNAL_ENDPOINT)}/field/{enc(SIGNAL_FIELD)}/request/{enc(example['id'])}"
    page.goto(link)
    article = page.locator(f'article.example[data-id="{example["id"]}"]')
    expect(article).to_be_visible()
    expect(page.locator(f'.examples-table tr[data-id="{example["id"]}"]')).to_have_class(
        re.compile(r"\bselected\b"))
    page.reload()
    expect(article).to_be_visible()
    expect(page.locator("h1")).to_contain_text(SIGNAL_ENDPOINT)
    expect(page.locator(".crumbs")).to_contain_text(SIGNAL_FIELD)

    page.goto(f"/#/request/{enc(example['id'])}")
    expect(article).to_be_visible()
    expect(page.locator(".crumbs a", has_text=SIGNAL_ENDPOINT)).to_have_attribute(
        "href", f"#/endpoint/{enc(SIGNAL_ENDPOINT)}")
    expect(article.locator(".col-candidate .line.fld")).to_contain_text(CANDIDATE_VALUE)

    page.goto(f"/#/endpoint/{enc(NOISE_ENDPOINT)}")
    expect(page.locator("h1")).to_contain_text(NOISE_ENDPOINT)
    expect(page.locator(f'#endpoint-list li[data-name="{NOISE_ENDPOINT}"]')).to_have_class(
        re.compile(r"\bactive\b"))


def test_unknown_request_link_explains_itself(page, stack, traffic):
    page.goto("/#/request/no-such-id")
    expect(page.locator(".view-request .message.error")).to_contain_text("not stored")
    # The 404 behind that message is the only thing the browser may complain about.
    assert all("404" in p for p in page.problems), page.problems
    page.problems.clear()


def test_clear_asks_for_confirmation_then_empties_the_list(page, stack, traffic):
    page.goto(f"/#/endpoint/{enc(SIGNAL_ENDPOINT)}")
    items = page.locator("#endpoint-list li")
    expect(items).to_have_count(len(traffic.endpoints))
    dialog = page.locator("#clear-dialog")

    page.locator("#clear-button").click()
    expect(dialog).to_be_visible()
    page.locator("#clear-cancel").click()
    expect(dialog).to_be_hidden()
    wait_for_poll(page)
    expect(items).to_have_count(len(traffic.endpoints))
    assert api(stack, "endpoints") == traffic.endpoints

    page.locator("#clear-button").click()
    expect(dialog).to_be_visible()
    page.locator("#clear-confirm").click()
    expect(dialog).to_be_hidden()
    expect(items).to_have_count(0)
    expect(page.locator("#endpoint-empty")).to_be_visible()
    expect(page).to_have_url(re.compile(r"#/$"))
    expect(page.locator(".view-overview .empty-state")).to_contain_text("No traffic compared yet")
    assert api(stack, "endpoints") == {}
    assert api(stack, "info")["last_reset"] is not None
    expect(page.locator("#last-reset")).to_have_text(re.compile(r"just now|\d+ s ago"))


def test_results_cleared_elsewhere_are_noticed_quietly(page, stack, traffic):
    page.goto(f"/#/endpoint/{enc(SIGNAL_ENDPOINT)}/field/{enc(SIGNAL_FIELD)}")
    expect(page.locator(".view-field .examples-table tbody tr")).not_to_have_count(0)
    stk.clear(stack)  # as another operator would, from another tab or the CLI
    expect(page.locator("#endpoint-list li")).to_have_count(0, timeout=8_000)
    expect(page.locator(".view-field .examples-table")).to_be_hidden()
    expect(page.locator(".view-field .empty-state")).to_be_visible()
    # A poll that read the overview just before the clear may still ask for the field's
    # examples and meet a 404 (Chromium logs every 404 as a console error; the page cannot
    # stop that). Such a 404 must pass quietly; from here on the page knows, and asks for
    # nothing that is gone.
    raced = list(page.problems)
    assert all("status of 404" in p for p in raced), raced
    expect(page.locator("#banner")).to_be_hidden()
    del page.problems[:len(raced)]
    # Same-document navigation, as a click on the breadcrumb would do: the page keeps what it knows.
    page.evaluate("hash => { window.location.hash = hash; }", f"#/endpoint/{enc(SIGNAL_ENDPOINT)}")
    expect(page.locator(".view-endpoint .empty-state")).to_contain_text("No results for this endpoint")
    wait_for_poll(page)  # and it keeps polling without asking for what is gone (no 404s)
    expect(page.locator("#banner")).to_be_hidden()


def test_hostile_traffic_is_shown_as_text_and_never_runs(page, stack, traffic):
    stk.send_hostile_traffic(stack)
    endpoints = stk.settle(stack)
    hostile = [name for name in endpoints if stk.XSS_SCRIPT in name]
    assert hostile, f"no endpoint carries the raw markup: {sorted(endpoints)}"
    name = hostile[0]

    response = page.goto("/")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    page.locator("#endpoint-list li .ep-name", has_text=stk.XSS_SCRIPT).click()
    expect(page.locator("h1 .mono")).to_have_text(name)

    fields = api(stack, f"endpoints/{enc(name)}/stats?exclude_noise=false")["fields"]
    assert fields, f"{name} recorded no differing field, so no example to open"
    page.locator(".fields-table tbody tr a").first.click()
    expect(page.locator(".view-field")).to_be_visible()
    page.locator(".view-field .examples-table tbody tr a").first.click()
    example = page.locator("article.example")
    expect(example).to_be_visible()
    expect(example.locator(".req-line")).to_contain_text(stk.XSS_SCRIPT)
    expect(example.locator(".kv td", has_text=stk.XSS_IMG)).to_have_count(1)
    expect(example.locator(".kv td", has_text=stk.XSS_SCRIPT)).to_have_count(1)
    for role in ("primary", "secondary", "candidate"):
        # httpbin echoes the request into each body (JSON-escaped quotes).
        expect(example.locator(f".col-{role} .line", has_text="onerror=")).to_have_count(1)
        expect(example.locator(f".col-{role} .line", has_text=stk.XSS_SCRIPT).first).to_be_visible()

    # The query-string variant, echoed as body.args.q.
    page.goto(f"/#/endpoint/{enc('GET /anything')}")
    page.locator(".fields-table tbody tr a").first.click()
    expect(page.locator(".view-field")).to_be_visible()
    page.locator(".view-field .examples-table tbody tr a").first.click()
    expect(page.locator("article.example .col-candidate .line", has_text="onerror=")).not_to_have_count(0)

    wait_for_poll(page)
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 1  # app.js, nothing injected


def test_csp_blocks_inline_code_even_if_markup_slipped_in(page, stack, traffic):
    page.goto("/")
    expect(page.locator("#endpoint-list li").first).to_be_visible()
    # Simulate a rendering bug: put markup into the DOM the way the page never does.
    page.evaluate(f"""() => {{
        const div = document.createElement('div');
        div.innerHTML = {stk.XSS_IMG!r} + '<a id="evil" href="#" onclick="window.__xss=1">x</a>';
        document.body.append(div);
        document.getElementById('evil').click();
    }}""")
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.problems and all("Content Security Policy" in p or "404" in p for p in page.problems), \
        page.problems
    page.problems.clear()


def test_page_and_static_files_are_served_with_types_and_policy(stack):
    expected = {
        "/": "text/html",
        "/static/app.js": "text/javascript",
        "/static/style.css": "text/css",
        "/static/favicon.svg": "image/svg+xml",
    }
    for path, content_type in expected.items():
        response = httpx.get(stack.console_url + path, timeout=5.0)
        assert response.status_code == 200, path
        assert response.headers["content-type"].split(";")[0] == content_type, path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert response.headers["x-content-type-options"] == "nosniff", path
    for path in ("/static/nope.js", "/static/..%2Fconsole.py", "/static/%2E%2E/console.py"):
        response = httpx.get(stack.console_url + path, timeout=5.0)
        assert response.status_code == 404, path
        assert "add_console_routes" not in response.text


def test_screenshot_script_renders_every_view(page, stack, traffic, tmp_path):
    from tests.console import screenshots

    screenshots.send_traffic(stack)
    files = screenshots.capture(page, stack, tmp_path)
    assert [f.name for f in files] == ["console-endpoint.png", "console-example.png", "console-latency.png"]
    for file in files:
        data = file.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width = int.from_bytes(data[16:20], "big")
        assert width == screenshots.WIDTH


def _open_signal_example(page, stack):
    example = newest_example(stack, SIGNAL_ENDPOINT, SIGNAL_FIELD)
    page.goto(f"/#/endpoint/{enc(SIGNAL_ENDPOINT)}/field/{enc(SIGNAL_FIELD)}/request/{enc(example['id'])}")
    article = page.locator(f'article.example[data-id="{example["id"]}"]')
    expect(article).to_be_visible()
    return article


def _check_curl(command: str, stack) -> None:
    import shlex
    import subprocess

    words = shlex.split(command)
    assert words[0] == "curl" and words[1] == f"{stack.proxy_url}/json", words
    assert "authorization: <redacted>" in words  # masked, never the token
    assert "demo-secret-token" not in command
    # The command reproduces the request: run it against the proxy port.
    done = subprocess.run(["bash", "-c", command + " -s -o /dev/null -w '%{http_code}'"],
                          capture_output=True, text=True, timeout=30)
    assert done.stdout == "200", done.stderr


def test_copy_as_curl_puts_the_masked_request_on_the_clipboard(page, stack, traffic):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.console_url)
    article = _open_signal_example(page, stack)
    article.locator("button.curl-button").click()
    expect(article.locator(".curl-status")).to_have_text("Copied.")
    shown = article.locator("pre.curl-command").inner_text()
    assert page.evaluate("navigator.clipboard.readText()") == shown
    _check_curl(shown, stack)


def test_copy_as_curl_without_a_clipboard_api_offers_the_text_selected(page, stack, traffic):
    page.add_init_script("Object.defineProperty(navigator, 'clipboard', { value: undefined });")
    article = _open_signal_example(page, stack)
    article.locator("button.curl-button").click()
    area = article.locator("textarea.curl-fallback")
    expect(area).to_be_visible()
    assert area.evaluate("el => el === document.activeElement && el.selectionEnd === el.value.length")
    _check_curl(area.input_value(), stack)


def test_moved_wrapper_and_baseline_failure_are_shown_as_such(browser, tmp_path):
    """A candidate that drops a wrapper object shows one `moved` line, not one per field;
    an endpoint where only the primary failed is labelled as the baseline's failure."""
    from tests.diffproxy.faultserver import FaultServer
    from tests.support import diffapi, procs

    with FaultServer(limit=64 * 1024) as faults:
        proxy = procs.start_diffproxy(
            primary=faults.address("primary"), secondary=faults.address("secondary"),
            candidate=faults.address("candidate"), store_path=tmp_path / "moved.sqlite",
            log_dir=tmp_path)
        try:
            with httpx.Client(timeout=10.0) as client:
                for path in ("/wrapped", "/wrapped", "/wrapped-headers", "/status500/primary"):
                    client.get(proxy.proxy_url + path)
            diffapi.wait_idle(proxy.admin_url)
            context = browser.new_context(viewport={"width": 1400, "height": 900},
                                          base_url=proxy.api_url)
            try:
                page = context.new_page()
                page.goto("/")
                failed = page.locator("#endpoint-list li", has_text="GET /status500/primary")
                expect(failed.locator(".badge")).to_have_text("baseline failed", ignore_case=True)
                page.goto(f"/#/endpoint/{enc('GET /wrapped')}/field/{enc('body.data')}")
                example = page.locator(".examples-table tbody tr").first
                expect(example.locator(".moved-line")).to_have_text("moved body.data.* -> body.*")
                example.locator("a").click()
                rows = page.locator("article.example .diff-table tbody tr")
                expect(rows).to_have_count(1)  # one change, one line
                expect(rows.first.locator(".chip")).to_have_text("moved (5 fields)")
                expect(rows.first.locator(".moved-line")).to_have_text("moved body.data.* -> body.*")
                # the case: httpbin's /headers wrapper dropped
                page.goto(f"/#/endpoint/{enc('GET /wrapped-headers')}/field/{enc('body.headers')}")
                example = page.locator(".examples-table tbody tr").first
                expect(example.locator(".moved-line")).to_have_text("moved body.headers.* -> body.*")
            finally:
                context.close()
        finally:
            proxy.stop()


SLOW_ENDPOINT = "GET /delay/:id"  # candidate/app.py answers GET /delay/<n> 80 ms later


def test_latency_panel_draws_three_distributions_and_the_overview_lists_slower(page, stack, traffic):
    """Issue 14: enough /delay/0 traffic for a verdict; the page shows what the API says."""
    from topology import DEFAULT

    stk.send_demo_traffic(stack, rounds=DEFAULT.latency.min_samples + 2, paths=("/delay/0",))
    latency = api(stack, f"endpoints/{enc(SLOW_ENDPOINT)}/latency")
    assert latency["verdict"] == "slower", latency
    page.goto(f"/#/endpoint/{enc(SLOW_ENDPOINT)}")
    panel = page.locator(".latency-panel")
    expect(panel.locator(".badge")).to_have_text("slower")
    chart = panel.locator("svg.latency-chart")
    expect(chart.locator("rect.latency-bar")).to_have_count(3)
    values = chart.locator("text.latency-value")
    expect(values).to_have_count(3)
    for i, target in enumerate(("primary", "secondary", "candidate")):
        expect(chart.locator("text.latency-label").nth(i)).to_have_text(target)
        expect(values.nth(i)).to_contain_text(f"p50 {latency[target]['p50_ms']:.1f} ms")
    # The candidate's bar starts further right than primary's: its p50 is later.
    xs = chart.locator("rect.latency-bar").evaluate_all("els => els.map(e => +e.getAttribute('x'))")
    assert xs[2] > xs[0]
    page.goto("/")
    slower = page.locator(".slower-panel li a")
    expect(slower).to_have_count(len([n for n, e in api(stack, "endpoints").items()
                                      if e["latency_verdict"] == "slower"]))
    expect(slower.first).to_have_text(SLOW_ENDPOINT)


ATTACK_PAGE = """<!doctype html><title>attack</title>
<form id="f" method="POST" enctype="text/plain" action="{clear}">
<input name="x" value="1"></form>
<script>if (location.hash === "#form") document.getElementById("f").submit();</script>"""


def test_a_page_of_another_site_cannot_clear_the_results(browser, stack, traffic):
    """Issue 13 item 2 in a real browser: a page on another site (localhost) and one on
    another port of the same host post a text/plain form and a no-cors fetch to
    /api/1/clear. Chromium sends each (the proxy answers 403) and nothing is cleared."""
    import http.server
    import threading

    clear_url = stack.api_url + "/clear"
    body = ATTACK_PAGE.format(clear=clear_url).encode()

    class Attack(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attack)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        answers: list[int] = []
        port = server.server_address[1]
        for origin in (f"http://localhost:{port}", f"http://127.0.0.1:{port}"):
            with page.expect_response(clear_url) as form:
                page.goto(f"{origin}/#form")  # the form submits itself: a top-level POST
            page.goto(f"{origin}/")
            with page.expect_response(clear_url) as fetched:
                kind = page.evaluate("url => fetch(url, {method: 'POST', mode: 'no-cors', "
                                     "body: 'x=1'}).then(r => r.type)", clear_url)
            assert kind == "opaque"  # sent, and its answer hidden from the page
            answers += [form.value.status, fetched.value.status]
        assert answers == [403] * 4, answers
    finally:
        context.close()
        server.shutdown()
    assert stk.settle(stack) == traffic.endpoints  # nothing was cleared
