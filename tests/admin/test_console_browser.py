"""The owner's console in a real browser: Debian's Chromium (/usr/bin/chromium) driven by playwright.

The server is the real app under uvicorn on a free port, in a thread with its own event loop (a
runtime on the memory store, the shipped flows, the embedded calendar); conversations are played
into that loop while the browser watches. Screenshots of every page go to tests/artifacts/console/
(gitignored). Run alone: `pytest -m browser`."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import AGENT, BIZ, BOOK, TOKEN, Env, make_env
from flowkit import FIXED_NOW, ROOT

CHROMIUM = os.environ.get("ORCHESTRATOR_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts" / "console"
ANN, CAT, DAN, EVE = "+15555550123", "+15555550125", "+15555550126", "+15555550127"
TYPO, FIXED = "What is the vist for?", "What is the visit for?"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium"),
]
sync_api = pytest.importorskip("playwright.sync_api")


class ConsoleServer:
    """uvicorn serving create_app() on 127.0.0.1:<free port>, its runtime reachable through `run`."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env: Env
        self.server: Any = None
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        import uvicorn

        from orchestrator.stores.memory import MemoryStore
        from orchestrator.web.app import create_app

        def add_typo(flows: Path) -> None:
            source = (flows / "dental_booking.yaml").read_text()
            assert FIXED in source
            (flows / "dental_booking.yaml").write_text(source.replace(FIXED, TYPO))  # the owner's typo

        try:
            self.env = await make_env(MemoryStore(), self.tmp, add_typo)
            runtime = self.env.runtime
            app = create_app(runtime.settings, runtime=runtime, start_background=False)
            self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                       access_log=False, lifespan="on"))
        except BaseException as exc:
            self.failure = exc
            raise
        finally:
            self.ready.set()
        await self.server.serve()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(20)

    def __enter__(self) -> ConsoleServer:
        self.thread.start()
        assert self.ready.wait(20) and self.failure is None, f"the console server could not be built: {self.failure!r}"
        deadline = time.monotonic() + 20
        while not (self.server.started or time.monotonic() > deadline):
            time.sleep(0.02)
        assert self.server.started, "the console server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    with ConsoleServer(tmp_path_factory.mktemp("console")) as srv:
        env = srv.env
        env.clock.now = FIXED_NOW - 86_400  # yesterday: Ann books
        srv.run(env.converse(ANN, BOOK))
        env.clock.now = FIXED_NOW
        srv.run(env.converse(CAT, AGENT))
        srv.run(env.converse(DAN, ["hi", "book"]))  # gives up at the name question
        # the funnel looked at while Dan waited: Recorder.analytics keeps a running conversation's path
        # (list_records does not), so an expiry after it counts the drop at ask_name, not at menu
        srv.run(env.runtime.recorder.analytics(srv.run(env.runtime.catalog.latest("dental_booking"))))
        env.runtime.store._sessions.pop(f"{BIZ}:{DAN}")  # type: ignore[attr-defined]  # its session expired
        srv.run(env.converse(EVE, ["hi", "<script>alert('x')</script>"]))
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


class Page:
    """A page plus every JavaScript error it logged (console errors and uncaught exceptions)."""

    def __init__(self, browser: Any, width: int = 1280, height: int = 900) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def sign_in(self, base: str, token: str = TOKEN) -> None:
        self.page.goto(f"{base}/console")
        self.page.get_by_label("Admin token").fill(token)
        self.page.keyboard.press("Enter")

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], f"JavaScript errors: {self.errors}"


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    p = Page(browser)
    yield p
    p.close()


def test_wrong_token_shows_no_data(server: ConsoleServer, page: Page) -> None:
    page.sign_in(server.url, "not-the-token")
    expect = sync_api.expect
    expect(page.page.get_by_role("alert")).to_contain_text("not the admin token")
    body = page.page.content()
    assert "Traceback" not in body and "dental_booking" not in body and "********23" not in body
    page.shot("01-wrong-token")
    # the refused sign-in is answered 401, which Chromium logs; nothing else may be
    assert page.errors == ["Failed to load resource: the server responded with a status of 401 (Unauthorized)"]
    page.errors.clear()
    page.page.goto(f"{server.url}/console/conversations")
    assert page.page.url.startswith(f"{server.url}/console/login")  # still signed out


def test_owner_finds_reads_sees_drop_off_fixes_a_typo_and_rolls_back(server: ConsoleServer, page: Page) -> None:
    expect, p = sync_api.expect, page.page
    page.sign_in(server.url)
    expect(p).to_have_url(re.compile(r"/console/conversations$"))
    rows = p.locator("#rows tr")
    expect(rows).to_have_count(4)
    expect(p.locator("#rows")).not_to_contain_text("+15555550")  # numbers masked
    page.shot("02-conversations")

    # live: a new conversation shows up without a reload
    server.run(server.env.converse("+15555550128", ["hi"]))
    expect(rows).to_have_count(5, timeout=8_000)
    page.shot("03-conversations-live")

    # yesterday's booked conversation, found with the filters (keyboard only)
    p.get_by_role("link", name="Yesterday").focus()
    p.keyboard.press("Enter")
    p.get_by_label("Outcome").fill("booked")
    p.get_by_label("Outcome").press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("booked")
    rows.first.get_by_role("link").click()
    expect(p.get_by_role("heading", level=1)).to_contain_text("+1********23")
    transcript = p.locator(".transcript")
    expect(transcript).to_contain_text("Ann Lee")
    expect(transcript).to_contain_text("Caller")
    expect(p.locator(".summary")).to_be_visible()
    page.shot("04-transcript")

    # a transcript holding <script> shows it as text
    p.get_by_role("link", name="Conversations").first.click()
    p.locator("#rows tr", has_text="+1********27").get_by_role("link").click()
    expect(transcript).to_contain_text("<script>alert('x')</script>")

    # where callers drop off: the funnel chart
    p.get_by_role("link", name="Flows").click()
    p.locator("a[href$='/flows/dental_booking/funnel']").click()
    expect(p.locator("body")).to_have_attribute("data-charts", "ready")
    expect(p.locator(".drops")).to_contain_text("ask_name: 1 dropped")
    assert p.locator("#funnel-chart").bounding_box()["height"] > 100  # type: ignore[index]
    page.shot("05-funnel")
    p.go_back()
    p.locator("a[href$='/flows/dental_booking/diagram']").click()
    expect(p.frame_locator("iframe.diagram").locator("body")).to_contain_text("ask_name")
    page.shot("06-diagram")

    # the editor: a broken edit is refused with its error at its line
    p.go_back()
    p.locator("a[href$='/flows/dental_booking/edit']").click()
    first = p.locator("#serving").inner_text()
    p.locator(".CodeMirror").click()
    p.keyboard.press("Control+End")
    p.keyboard.type("\nstates: [broken")
    error = p.locator("#diagnostics li[data-severity=error]").first
    expect(error).to_be_visible()  # checked as typed, before any save
    expect(p.locator(".CodeMirror .line-error")).to_have_count(1)
    page.shot("07-editor-error")
    p.get_by_role("button", name="Save as new revision").click()
    expect(p.locator("#refused")).to_contain_text("Not saved")
    assert server.run(server.env.runtime.catalog.latest("dental_booking")).revision == first

    # undo it, fix the typo, see the diff, save
    p.locator(".CodeMirror").click()
    value = "document.querySelector('.CodeMirror').CodeMirror.getValue()"
    for _ in range(10):  # CodeMirror groups typed characters into undo events
        if "[broken" not in p.evaluate(value):
            break
        p.keyboard.press("Control+z")
    assert "[broken" not in p.evaluate(value)
    p.evaluate("""([typo, fixed]) => {
        const cm = document.querySelector('.CodeMirror').CodeMirror;
        const at = cm.getValue().indexOf(typo);
        const from = cm.posFromIndex(at + typo.indexOf('vist'));
        cm.replaceRange('visit', from, {line: from.line, ch: from.ch + 4});
    }""", [TYPO, FIXED])
    expect(p.locator("#verdict")).to_contain_text("No problems")
    expect(p.locator("#diff .d-add")).to_contain_text(FIXED)
    page.shot("08-editor-diff")
    p.get_by_role("button", name="Save as new revision").click()
    expect(p.locator("#saved")).to_contain_text("is now serving")
    fixed = p.locator("#serving").inner_text()
    assert fixed != first
    serving = server.run(server.env.runtime.catalog.latest("dental_booking"))
    assert serving.revision == fixed and FIXED in server.run(server.env.runtime.store.get_revision(fixed))
    page.shot("09-saved")

    # one-click rollback to the first revision
    p.get_by_role("button", name=f"Roll back to revision {first}").click()
    expect(p.locator("#saved")).to_be_visible()
    rolled = p.locator("#serving").inner_text()
    assert rolled not in (first, fixed)
    source = server.run(server.env.runtime.store.get_revision(rolled))
    assert TYPO in source and f"rolled back to revision {first}" in source
    page.shot("10-rolled-back")


def test_owner_marks_a_missed_visit_a_no_show(server: ConsoleServer, page: Page) -> None:
    """Ann's visit (booked yesterday for 10:00 today) is past: its row's No-show button, clicked,
    turns the row into "no-show" in place (HTMX, the session's CSRF token), and the funnel counts it."""
    expect, p = sync_api.expect, page.page
    page.sign_in(server.url)
    p.get_by_role("link", name="Bookings").click()
    row = p.locator("tbody tr", has_text="Ann Lee")
    expect(row.locator("td.status")).to_contain_text("past")
    button = row.get_by_role("button", name="No-show")
    expect(button).to_be_visible()
    page.shot("13-bookings-before-no-show")
    button.click()
    expect(row.locator("td.status")).to_have_text("no-show")
    expect(row.get_by_role("button", name="No-show")).to_have_count(0)
    page.shot("14-bookings-no-show")
    p.reload()
    expect(p.locator("tbody tr", has_text="Ann Lee").locator("td.status")).to_have_text("no-show")
    p.get_by_role("link", name="Flows").click()
    p.locator("a[href$='/flows/dental_booking/funnel']").click()
    expect(p.locator("dl.facts")).to_contain_text("No-shows")
    expect(p.locator("dl.facts dt", has_text="No-shows").locator("+ dd")).to_have_text("1 (1 of the 1 booked)")


def test_phone_width_and_keyboard(server: ConsoleServer, browser: Any) -> None:
    page = Page(browser, width=390, height=844)
    try:
        p = page.page
        page.sign_in(server.url)
        expect = sync_api.expect
        expect(p.locator("#rows tr").first).to_be_visible()
        assert p.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # the table scrolls, not the page
        p.keyboard.press("Tab")
        expect(p.get_by_role("link", name="Skip to content")).to_be_focused()
        page.shot("11-phone-conversations")
        p.goto(f"{server.url}/console/flows/dental_booking/edit")
        expect(p.locator(".CodeMirror")).to_be_visible()
        assert p.evaluate("document.documentElement.scrollWidth") <= 390 + 1
        page.shot("12-phone-editor")
    finally:
        page.close()
