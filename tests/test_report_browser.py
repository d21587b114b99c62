"""The rendered report in a real browser: headless Chromium, offline, no console error, no request.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe`` (file
descriptors 3 and 4), so no extra Python package and no network port are needed.  A full-page
screenshot is saved to ``tests/artifacts/report.png`` for a person to look at.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import require_program
from test_report import fabricate

from hdank.report import render_report_files

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
         "--hide-scrollbars", "--mute-audio"]


class DevTools:
    """Minimal DevTools-protocol client over Chromium's pipe (NUL-separated JSON messages)."""

    def __init__(self, chromium: str, user_data_dir: Path, timeout: float = 60.0, bash: str = "bash") -> None:
        cmd_r, self._cmd_w = os.pipe()   # we write commands; Chromium reads them on fd 3
        self._res_r, res_w = os.pipe()   # Chromium writes replies on fd 4; we read them
        self.timeout = timeout
        # Chromium's ends moved to fds >= 10 so that the redirections below cannot clobber them
        high_r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 10)
        high_w = fcntl.fcntl(res_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(cmd_r)
        os.close(res_w)
        # bash (dash takes one-digit fds only) puts them on fds 3 and 4, then execs Chromium
        redirect = f'exec "$0" "$@" 3<&{high_r} 4>&{high_w} {high_r}<&- {high_w}>&-'
        args = [chromium, *FLAGS, f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen([bash, "-c", redirect, *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     pass_fds=(high_r, high_w))
        os.close(high_r)
        os.close(high_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict | None:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._res_r], [], [], left)
            if not ready:
                return None
            chunk = os.read(self._res_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply is None:
                raise TimeoutError(f"no reply to {method}")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, seconds: float) -> bool:
        if any(e.get("method") == method for e in self.events):
            return True
        deadline = time.monotonic() + seconds
        while True:
            event = self._read_message(deadline)
            if event is None:
                return False
            self.events.append(event)
            if event.get("method") == method:
                return True

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (event := self._read_message(deadline)) is not None:
            self.events.append(event)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._res_r):
            try:
                os.close(fd)
            except OSError:
                pass


@dataclass
class PageVisit:
    url: str
    title: str
    width: int
    height: int
    png: bytes
    figures_drawn: list[bool]
    console_errors: list[dict]
    exceptions: list[dict]
    log_errors: list[dict]
    requests: list[str]


def visit(chromium: str, html: Path, profile: Path, bash: str = "bash") -> PageVisit:
    """Open ``html`` from disk in headless Chromium; collect errors, requests and a screenshot."""
    url = html.resolve().as_uri()
    browser = DevTools(chromium, profile, bash=bash)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        browser.send("Page.navigate", {"url": url}, session=session)
        assert browser.wait_for("Page.loadEventFired", 30), "the page did not finish loading"
        browser.drain(0.5)
        layout = browser.send("Page.getLayoutMetrics", session=session)
        size = layout.get("cssContentSize") or layout["contentSize"]
        width, height = int(size["width"]), int(size["height"])
        shot = browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}, session=session)
        title = browser.send("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                             session=session)["result"]["value"]
        drawn = browser.send("Runtime.evaluate", {
            "expression": "Array.from(document.querySelectorAll('svg.figure')).map(s => s.getBBox().width > 0)",
            "returnByValue": True}, session=session)["result"]["value"]
        browser.drain(0.2)
    finally:
        browser.close()
    events = browser.events
    return PageVisit(
        url=url, title=title, width=width, height=height, png=base64.b64decode(shot["data"]),
        figures_drawn=drawn,
        console_errors=[e["params"] for e in events if e.get("method") == "Runtime.consoleAPICalled"
                        and e["params"].get("type") in {"error", "assert"}],
        exceptions=[e["params"] for e in events if e.get("method") == "Runtime.exceptionThrown"],
        log_errors=[e["params"]["entry"] for e in events if e.get("method") == "Log.entryAdded"
                    and e["params"]["entry"].get("level") == "error"],
        requests=[e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"],
    )


def test_report_in_headless_chromium(tmp_path):
    chromium = require_program("chromium")
    bash = require_program("bash")
    kwargs = fabricate(tmp_path, hostile=True)
    render_report_files(**kwargs)
    page = visit(chromium, Path(kwargs["html_out"]), tmp_path / "chromium-profile", bash=bash)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report.png").write_bytes(page.png)

    assert not page.console_errors, page.console_errors
    assert not page.exceptions, page.exceptions
    assert not page.log_errors, page.log_errors
    assert page.requests == [page.url], f"requests other than the page itself: {page.requests}"
    assert page.title.startswith("High-dose anakinra")
    assert len(page.figures_drawn) == 5 and all(page.figures_drawn), "an inline SVG figure did not render"
    assert page.height > 3000 and page.width >= 1000


@pytest.mark.e2e
def test_default_run_report_in_headless_chromium(tmp_path_factory, tmp_path):
    """The report of the default workflow run (the shared clean run), not a fabricated one."""
    import html5lib

    from shared_runs import clean_run

    chromium = require_program("chromium")
    bash = require_program("bash")
    report = clean_run(tmp_path_factory, "clean-a") / "results" / "report" / "report.html"
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(report.read_text())
    page = visit(chromium, report, tmp_path / "chromium-profile", bash=bash)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report-default-run.png").write_bytes(page.png)
    assert not page.console_errors and not page.exceptions and not page.log_errors
    assert page.requests == [page.url], f"requests other than the page itself: {page.requests}"
    assert len(page.figures_drawn) == 5 and all(page.figures_drawn)
