"""Both HTML reports in a real browser (Debian's headless Chromium, driven over its DevTools protocol):
at a phone width (390 px) and a desktop width (1400 px) the page never scrolls sideways (wide tables
scroll in their own box) and logs no console error. Full-page screenshots are kept under
``reports/browser/`` (the path is printed) for a person to look at.

Skipped, with the reason, only when no Chromium is installed (``.ci/run`` installs Debian's
``chromium``; browser downloads such as ``playwright install`` cannot work here).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from faulty_targets import breaking_proxy

from eyechart.conform.runner import ConformOptions, run_conformance
from eyechart.target.launch import RunningTarget

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (.ci/run installs Debian's `chromium`; apt-get failed here)"
)
WIDTHS = (390, 1400)
ARTIFACTS = Path(__file__).resolve().parents[1] / "reports" / "browser"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--remote-debugging-port=0", "--remote-allow-origins=*",
)  # fmt: skip


class Browser:
    """One headless Chromium with a fresh profile, and a DevTools connection to its first page."""

    def __init__(self, profile_dir: Path) -> None:
        import websocket  # websocket-client: DevTools speaks JSON over a websocket

        assert CHROMIUM is not None
        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        port = self._devtools_port()
        pages = [
            t
            for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            if t["type"] == "page"
        ]
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30)
        self._id = 0
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def _devtools_port(self) -> int:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:  # keep reading stderr so chromium never blocks on a full pipe
                threading.Thread(target=self.proc.stderr.read, daemon=True).start()
                return int(m.group(1))
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError("chromium did not open its DevTools port")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))
            self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == event for e in self.events):
                return
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(event)

    def open(self, path: Path, width: int) -> dict[str, Any]:
        """Load ``path`` at ``width`` CSS px; the layout numbers and the console errors seen."""
        self.events.clear()
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1,
                  mobile=width < 600)  # fmt: skip
        self.call("Page.navigate", url=path.as_uri())
        self.wait_for("Page.loadEventFired")
        js = (
            "JSON.stringify({scrollWidth: document.documentElement.scrollWidth,"
            " clientWidth: document.documentElement.clientWidth,"
            " height: document.documentElement.scrollHeight,"
            " widest: Array.from(document.body.querySelectorAll('*'))"
            "   .filter(e => e.closest('.scroll') === null"
            "     && e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)"
            "   .slice(0, 5).map(e => e.tagName + '.' + e.className)})"
        )
        layout = json.loads(
            self.call("Runtime.evaluate", expression=js, returnByValue=True)["result"]["value"]
        )
        errors = [
            e for e in self.events
            if e.get("method") == "Runtime.exceptionThrown"
            or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
            or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
        ]  # fmt: skip
        layout["console_errors"] = [json.dumps(e["params"])[:300] for e in errors]
        return layout

    def screenshot(self, out: Path, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=min(height, 16000),
                  deviceScaleFactor=1, mobile=width < 600)  # fmt: skip
        shot = self.call("Page.captureScreenshot", format="png")
        out.write_bytes(base64.b64decode(shot["data"]))

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            if self.proc.stderr is not None:
                self.proc.stderr.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def conform_report(target: RunningTarget, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A failing conformance report: a real run through a proxy that breaks the contract."""
    out = tmp_path_factory.mktemp("conform")
    with breaking_proxy(
        target.base_url, ["auth.none", "usage.missing", "errors.stack_trace"], api_key=target.api_key
    ) as url:
        opts = ConformOptions(
            base_url=url,
            api_key=target.api_key,
            model=target.model,
            only=["auth.*", "response.*", "errors.*", "models.*"],
            report_dir=out,
            progress=False,
        )
        outcome = run_conformance(opts)
    assert int(outcome.code) == 1, outcome.message
    return outcome.reports["html"]


@pytest.fixture(scope="module")
def load_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A load report with failures of two classes: a real short run against a target injecting faults."""
    out = tmp_path_factory.mktemp("load")
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("EYECHART_API_KEY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "eyechart", "load", "--duration", "6s", "--users", "4", "--min-requests", "1",
         "--target-arg=--speed=8", "--target-arg=--faults=error_rate=0.15,disconnect=0.1",
         "--report-dir", str(out)],
        capture_output=True, text=True, timeout=180, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    pages = list(out.glob("*-load/index.html"))
    assert pages, proc.stdout + proc.stderr
    return pages[0]


def _check_page(browser: Browser, page: Path, name: str, width: int) -> dict[str, Any]:
    layout = browser.open(page, width)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{name}-{width}.png"
    browser.screenshot(shot, width, int(layout["height"]))
    print(f"screenshot: {shot}")
    assert layout["scrollWidth"] <= layout["clientWidth"], (
        f"{name} at {width} px scrolls sideways: page {layout['scrollWidth']} px wide in "
        f"{layout['clientWidth']} px; overflowing: {layout['widest']}"
    )
    assert not layout["console_errors"], layout["console_errors"]
    return layout


@pytest.mark.parametrize("width", WIDTHS)
def test_conformance_report_fits_and_filters(browser: Browser, conform_report: Path, width: int) -> None:
    _check_page(browser, conform_report, "conformance", width)
    total = browser.evaluate("document.querySelectorAll('details.check').length")
    fails = browser.evaluate("document.querySelectorAll('details.check[data-status=fail]').length")
    assert total > fails >= 2
    # the status filter: untick everything but "fail" and only the failures stay visible
    browser.evaluate(
        "document.querySelectorAll('#filters input[name=status]')"
        ".forEach(i => {i.checked = i.value === 'fail'});"
        "document.getElementById('filters').dispatchEvent(new Event('input'))"
    )
    visible = browser.evaluate("document.querySelectorAll('details.check:not(.hidden)').length")
    assert visible == fails
    # the search box: one check id leaves one check
    browser.evaluate(
        "document.querySelectorAll('#filters input[type=checkbox]').forEach(i => {i.checked = true});"
        "const q = document.querySelector('#filters input[type=search]'); q.value = 'auth.wrong_key';"
        "document.getElementById('filters').dispatchEvent(new Event('input'))"
    )
    assert browser.evaluate("document.querySelectorAll('details.check:not(.hidden)').length") == 1


@pytest.mark.parametrize("width", WIDTHS)
def test_load_report_fits(browser: Browser, load_report: Path, width: int) -> None:
    _check_page(browser, load_report, "load", width)
    text = browser.evaluate("document.body.innerText")
    assert "First failed request of each class" in text and "X-Request-Id" in text
    assert "$EYECHART_API_KEY" in text and "eyechart-local" not in text  # the key is masked
    assert "TTFT percentiles" in browser.evaluate("document.body.innerHTML")
