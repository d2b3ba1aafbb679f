"""The reviewer's page in a real headless Chromium (Debian's chromium, driven by Playwright).

Loads the page (nothing fetched but the server itself), submits a letter, toggles criteria and sees
the decision change in place, copies the rationale as Markdown, works by keyboard, and works with
no script at all through the plain form post. CI installs chromium (.ci/run); where it is missing
outside CI these tests skip, in CI they fail.

MTUS_UPDATE_SCREENSHOT=1 also writes docs/workbench.png (the README's picture).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from mtus_engine.interfaces.service.launch import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
LETTER = ROOT / "cases" / "letters" / "000_76513b612d91b1e3.txt"
CASE = ROOT / "cases" / "example-chronic-cyclobenzaprine.yaml"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
TIMEOUT = 30_000

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("chromium is not installed: .ci/run installs it (apt-get install -y chromium)")
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    with ServerProcess(["--db", str(tmp / "d.db")], log_path=tmp / "server.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    try:
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    except Exception:  # noqa: BLE001 - the page falls back to selecting the Markdown
        pass
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT)
    foreign = []
    host = urlparse(server.url).netloc

    def guard(route):
        if urlparse(route.request.url).netloc != host:
            foreign.append(route.request.url)
            return route.abort()
        return route.continue_()
    pg.route("**/*", guard)
    errors = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.foreign = foreign
    pg.errors = errors
    yield pg
    ctx.close()


def _renders(pg) -> int:
    return int(pg.locator("body").get_attribute("data-renders") or 0)


def _wait_render(pg, before: int) -> None:
    """Until the page drew a new answer (polled from here: the page's CSP forbids eval'd waits)."""
    import time
    deadline = time.monotonic() + TIMEOUT / 1000
    while int(pg.locator("body").get_attribute("data-renders") or 0) <= before:
        if time.monotonic() > deadline:
            raise AssertionError(f"the page drew nothing new (error: {pg.locator('#error').inner_text()!r})")
        pg.wait_for_timeout(25)


def _decision(pg, index: int = 0) -> str:
    return pg.locator(f'article.determination[data-index="{index}"] .decision').get_attribute("data-decision")


def test_page_loads_offline_and_is_labelled(page, server):
    page.goto(server.url + "/")
    expect(page).to_have_title("MTUS reviewer's workbench")
    for field in ("#document", "#file", "#edition"):
        label = page.locator(f'label[for="{field[1:]}"]')
        expect(label).to_have_count(1)
    options = page.locator("#edition option").all_inner_texts()
    assert options[0].startswith("In effect on the request date") and len(options) >= 2
    assert page.evaluate("document.body.getAttribute('data-ready')") == "1"
    assert page.foreign == [] and page.errors == []


def test_submit_letter_toggle_criteria_and_copy(page, server, tmp_path):
    page.goto(server.url + "/")
    page.fill("#document", LETTER.read_text())
    before = _renders(page)
    page.click("#submit")
    _wait_render(page, before)
    first = page.locator('article.determination[data-index="0"]')
    assert _decision(page) == "non-certify"
    expect(first.locator("table.criteria tbody tr").first).to_be_visible()
    assert first.locator(".citations li").count() >= 1
    assert "verified in an IMR letter" in first.locator(".citations").inner_text() \
        or "recalled" in first.locator(".citations").inner_text() or "public" in first.locator(".citations").inner_text()
    assert first.locator(".missing li").count() >= 1
    assert "not documented" in first.locator("table.criteria").inner_text() \
        or "failed" in first.locator("table.criteria").inner_text()

    # one toggle re-evaluates in place: that criterion is now met, no page load
    url = page.url
    met_toggles = [k for k in first.locator("input.toggle").evaluate_all(
        "els => els.map(e => [e.dataset.key, e.parentElement.innerText.trim()])") if k[1] == "if met"]
    assert met_toggles, "no criterion of the first request can be toggled"
    changed = False
    for n, (key, _) in enumerate(met_toggles):
        box = page.locator(f'input.toggle[data-key="{key}"]')
        before = _renders(page)
        if n == 0:  # by keyboard: focus the checkbox, press Space
            box.focus()
            page.keyboard.press("Space")
        else:
            box.check()
        _wait_render(page, before)
        expect(page.locator(f'input.toggle[data-key="{key}"]')).to_be_checked()
        if n == 0:
            row = page.locator(f'tr[data-key="{key}"]')
            expect(row).to_have_class("state-met")
            assert page.evaluate("document.activeElement && document.activeElement.dataset.key") == key
        if _decision(page) != "non-certify":
            changed = True
            break
    assert changed, "toggling the failing criteria never changed the decision"
    assert _decision(page) == "certify"
    expect(page.locator("p.changed").first).to_contain_text("Non-certify")
    expect(page.locator(".whatif-note")).to_be_visible()
    assert page.url == url
    page.evaluate("window.scrollTo(0, document.querySelector('#results').offsetTop - 8)")
    page.screenshot(path=str(tmp_path / "workbench.png"), full_page=False)
    if os.environ.get("MTUS_UPDATE_SCREENSHOT"):
        page.screenshot(path=str(ROOT / "docs" / "workbench.png"), full_page=False)

    # copy as Markdown: the clipboard (or the selected text) holds the rationale of what is shown
    page.click("#copy-md")
    expect(page.locator("#copy-status")).not_to_be_empty()
    markdown = page.locator("#markdown").input_value()
    assert markdown.startswith("# Determination:") and "**certify**" in markdown
    if "Copied" in page.locator("#copy-status").inner_text():
        assert page.evaluate("navigator.clipboard.readText()") == markdown

    # clear the toggles: the record's answer again
    before = _renders(page)
    page.click("#clear-toggles")
    _wait_render(page, before)
    assert _decision(page) == "non-certify"
    assert page.locator("input.toggle:checked").count() == 0
    assert page.foreign == [] and page.errors == []


def test_keyboard_only_submission_with_an_edition(page, server):
    page.goto(server.url + "/")
    page.locator("#document").focus()
    page.keyboard.insert_text(CASE.read_text())
    page.keyboard.press("Tab")            # the file input
    page.keyboard.press("Tab")            # the edition
    assert page.evaluate("document.activeElement.id") == "edition"
    page.select_option("#edition", "mtus-2016")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "submit"
    before = _renders(page)
    page.keyboard.press("Enter")
    _wait_render(page, before)
    assert _decision(page) == "non-certify"
    expect(page.locator("#results .meta").first).to_contain_text("mtus-2016")
    assert page.evaluate("document.activeElement.id") == "results-title"


def test_bad_input_shows_the_error(page, server):
    page.goto(server.url + "/")
    page.fill("#document", "id: x\nrequests: []\n")
    page.click("#submit")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("requests")


def test_plain_form_post_without_script(browser, server):
    ctx = browser.new_context(java_script_enabled=False)
    try:
        pg = ctx.new_page()
        pg.set_default_timeout(TIMEOUT)
        pg.goto(server.url + "/")
        pg.fill("#document", LETTER.read_text())
        pg.click("#submit")
        pg.wait_for_selector("article.determination")
        assert pg.locator("article.determination .decision").first.get_attribute("data-decision") == "non-certify"
        assert pg.locator("#document").input_value().strip() == LETTER.read_text().strip()
    finally:
        ctx.close()


def test_api_docs_render_offline(page, server):
    """Swagger UI at /docs draws every operation from this server's own files: nothing from a CDN."""
    page.goto(server.url + "/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/v1/evaluate" in p for p in paths) and any("/cds-services" in p for p in paths)
    assert page.foreign == [] and page.errors == []
