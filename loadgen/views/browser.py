"""A page as a real browser shows it: headless Chromium driven over the DevTools protocol.

``find_chromium()`` names a Chromium on this machine, or None. ``Browser`` starts one, fresh and
off the network, and drives a single page::

    with Browser() as browser:
        browser.open(path.as_uri(), width=1280, height=900)   # waits for the load event
        browser.evaluate("document.querySelector('h1').textContent")
        browser.click("details > summary")                    # real mouse events
        png = browser.screenshot(full=True)                   # PNG bytes
        browser.console_errors, browser.requests              # what the page did

The contract: the standard library only. Chromium is started with ``--remote-debugging-pipe``:
it reads protocol messages (JSON, each ended by a NUL byte) from its fd 3 and writes its answers
and events to its fd 4, which ``sh`` wires to our pipes. Every wait has a deadline (``timeout``
seconds) and ends in ``BrowserError`` (a RuntimeError) saying what was awaited and the end of
Chromium's own log, so a hung browser fails fast. Chromium runs in a process group of its own,
with a temporary profile; leaving the ``with`` block (an error and Ctrl-C included) kills the
group and removes the profile. Were this process killed outright, Chromium would see its pipe
close and quit by itself.

Nothing leaves the machine: the flags stop the browser's own traffic (updates, sync, safe
browsing, DNS), and every http(s)/ws(s)/ftp request a page makes is blocked, yet still recorded
in ``requests``, and its failure (as any failed load) in ``console_errors``.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--disable-default-apps", "--disable-domain-reliability", "--disable-breakpad",
    "--disable-client-side-phishing-detection", "--disable-features=Translate,MediaRouter,"
    "OptimizationHints,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
    "--metrics-recording-only", "--no-pings", "--no-proxy-server", "--mute-audio",
    "--hide-scrollbars", "--password-store=basic", "--use-mock-keychain",
    # /tmp, not /dev/shm, for shared memory: a container's /dev/shm is often too small for it
    "--disable-dev-shm-usage",
    # no name resolves: whatever slipped past the flags above fails at once, offline
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-pipe",
)  # fmt: skip
BLOCKED = ["http://*", "https://*", "ws://*", "wss://*", "ftp://*"]
# Chromium's fd 3 and fd 4 are our stdin and stdout pipes; its own stdout goes nowhere.
LAUNCH = ("/bin/sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null')


class BrowserError(RuntimeError):
    """Chromium failed, answered with an error, or did not answer in time."""


def find_chromium() -> str | None:
    """Debian's /usr/bin/chromium, else the first of chromium, chromium-browser and
    google-chrome on PATH; None where there is none."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    for name in CANDIDATES:
        if found := shutil.which(name):
            return found
    return None


class Browser:
    """One headless Chromium showing one page; use it as a context manager.

    The caller uses ``open``, ``evaluate``, ``click``, ``rect`` and ``screenshot``; reads
    ``console_errors`` (console.error calls, uncaught exceptions, the browser's error log:
    failed loads included) and ``requests`` (every URL the page asked for, in order, its own
    included). ``open`` clears both.
    """

    def __init__(self, executable: str | None = None, timeout: float = 30.0) -> None:
        self.executable = executable or find_chromium()
        self.timeout = timeout
        self.console_errors: list[str] = []
        self.requests: list[str] = []
        self._process: subprocess.Popen | None = None
        self._profile: str | None = None
        self._buffer = b""
        self._next_id = 0
        self._session: str | None = None
        self._events: list[str] = []  # the names of the page's events since the last open
        self._urls: dict[str, str] = {}  # request id -> URL, to name a failed request
        self._crashed = False

    def __enter__(self) -> Browser:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """Chromium's process id, which is also its process group's; None once closed."""
        return None if self._process is None else self._process.pid

    @property
    def profile(self) -> str | None:
        """The temporary profile folder, removed on close."""
        return self._profile

    def _start(self) -> None:
        if self.executable is None:
            raise BrowserError("no Chromium found (chromium, chromium-browser, google-chrome)")
        self._profile = tempfile.mkdtemp(prefix="loadgen-chromium-")
        flags = [*FLAGS, f"--user-data-dir={self._profile}", "--window-size=1280,900"]
        if os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to run as root in its sandbox
        with open(Path(self._profile) / "chromium.log", "wb") as log:
            try:
                self._process = subprocess.Popen(
                    [*LAUNCH, self.executable, *flags, "about:blank"], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                )  # fmt: skip
            except OSError as error:
                raise BrowserError(f"cannot start {self.executable}: {error}") from None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        attached = self.send("Target.attachToTarget", targetId=target, flatten=True)
        self._session = attached["sessionId"]  # from here on, every message is the page's
        for domain in ("Inspector", "Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Network.setBlockedURLs", urls=BLOCKED)

    def close(self) -> None:
        """Kill Chromium's whole process group and remove its profile; safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            # SIGTERM to Chromium first, to let it end cleanly and tell its helpers; SIGKILL
            # takes whatever is left of the group a few seconds on. (Helpers that outlive it
            # are orphans, reaped by init, not by us.)
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    # -- the protocol ---------------------------------------------------------------------

    def send(self, method: str, **params: Any) -> dict:
        """Call one protocol method on the page (the browser itself before it is attached);
        return its result, handling the events that arrive meanwhile."""
        process = self._running()
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self._session is not None:
            message["sessionId"] = self._session
        try:
            assert process.stdin is not None
            process.stdin.write(json.dumps(message).encode() + b"\0")
            process.stdin.flush()
        except OSError as error:
            raise self._failure(f"cannot send {method}: {error}") from None
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._receive(deadline, method, self.timeout)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error'].get('message', answer)}")
                return answer.get("result", {})
            self._handle(answer)

    def wait_for(self, event: str, timeout: float | None = None) -> None:
        """Wait until the page has sent ``event`` (say, Page.loadEventFired) since ``open``."""
        seconds = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + seconds
        while event not in self._events:
            self._handle(self._receive(deadline, event, seconds))

    def _running(self) -> subprocess.Popen:
        if self._process is None:
            raise BrowserError("the browser is not running (use Browser as a context manager)")
        if self._crashed:
            raise BrowserError("the page crashed earlier")
        return self._process

    def _receive(self, deadline: float, awaited: str, seconds: float) -> dict:
        """The next message, or BrowserError once ``deadline`` passes or Chromium ends."""
        stdout = self._running().stdout
        assert stdout is not None
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([stdout], [], [], left)[0]:
                raise self._failure(f"no {awaited} within {seconds:g} s")
            chunk = os.read(stdout.fileno(), 1 << 20)
            if not chunk:
                raise self._failure(f"Chromium ended while waiting for {awaited}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def _failure(self, what: str) -> BrowserError:
        log = Path(self._profile or "/nonexistent") / "chromium.log"
        try:
            lines = log.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        # the last lines that are not its everyday complaints about a missing D-Bus
        tail = [line for line in lines if "dbus" not in line][-3:]
        return BrowserError(what + ("; Chromium said: " + " | ".join(tail) if tail else ""))

    def _handle(self, message: dict) -> None:
        """Record what an event tells: a console error, a request, a page event's name."""
        method, params = message.get("method", ""), message.get("params", {})
        self._events.append(method)
        if method == "Inspector.targetCrashed":  # nothing will answer: say so now, and after
            self._crashed = True
            raise self._failure("the page crashed")
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            self.console_errors.append(" ".join(_shown(arg) for arg in args))
        elif method == "Runtime.exceptionThrown":
            self.console_errors.append(f"uncaught: {_thrown(params.get('exceptionDetails', {}))}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.console_errors.append(f"{entry.get('text')} ({entry.get('url', '')})")
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            self.requests.append(url)
            self._urls[params.get("requestId", "")] = url
        elif method == "Network.loadingFailed":  # a blocked request says so here, not in Log
            url = self._urls.get(params.get("requestId", ""), "?")
            why = params.get("errorText") or f"blocked ({params.get('blockedReason')})"
            self.console_errors.append(f"failed to load {url}: {why}")

    # -- what a test does with a page ------------------------------------------------------

    def open(self, url: str, width: int = 1280, height: int = 900) -> None:
        """Show ``url`` in a viewport of ``width`` x ``height`` CSS pixels; return once it has
        loaded (images and styles included) and been painted."""
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        for record in (self.console_errors, self.requests, self._events, self._urls):
            record.clear()
        navigated = self.send("Page.navigate", url=url)
        if navigated.get("errorText"):
            raise BrowserError(f"cannot open {url}: {navigated['errorText']}")
        self.wait_for("Page.loadEventFired")
        # two animation frames: the first paint after the load has happened
        self.evaluate("new Promise(done => requestAnimationFrame(() => "
                      "requestAnimationFrame(done)))")  # fmt: skip

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise awaited), as JSON."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)  # fmt: skip
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]!r} threw: {_thrown(result['exceptionDetails'])}")
        return result.get("result", {}).get("value")

    def rect(self, selector: str, scroll: bool = False) -> dict[str, float]:
        """The first match's box in page coordinates (x, y, width, height, CSS pixels), and its
        ``top``, ``bottom`` and ``left`` in the viewport as it is; ``scroll`` first brings it
        into the middle of the viewport."""
        found = self.evaluate(f"""(() => {{
            const element = document.querySelector({json.dumps(selector)});
            if (!element) return null;
            if ({json.dumps(scroll)}) element.scrollIntoView({{block: "center"}});
            const box = element.getBoundingClientRect();
            return {{x: box.left + scrollX, y: box.top + scrollY, width: box.width,
                     height: box.height, top: box.top, bottom: box.bottom,
                     left: box.left}};
        }})()""")
        if found is None:
            raise BrowserError(f"nothing in the page matches {selector!r}")
        return found

    def click(self, selector: str) -> None:
        """Click the middle of the first match as a user would: scroll it into view, move the
        mouse there, press and release the left button."""
        box = self.rect(selector, scroll=True)
        if box["width"] <= 0 or box["height"] <= 0:
            raise BrowserError(f"{selector!r} has no size on screen: it cannot be clicked")
        x, y = box["left"] + box["width"] / 2, box["top"] + box["height"] / 2
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                      clickCount=1)  # fmt: skip
        self.evaluate("new Promise(done => requestAnimationFrame(done))")  # its effect painted

    def screenshot(self, clip: dict[str, float] | None = None, full: bool = False) -> bytes:
        """PNG bytes: the viewport; the whole page with ``full``; or ``clip``, a region in page
        coordinates (x, y, width, height, as ``rect`` gives), wherever it is scrolled."""
        if full:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"]}
        params: dict[str, Any] = {"format": "png"}
        if clip is not None:
            region = {key: clip[key] for key in ("x", "y", "width", "height")}
            params.update(clip={**region, "scale": 1}, captureBeyondViewport=True)
        return base64.b64decode(self.send("Page.captureScreenshot", **params)["data"])


def _signal_group(group: int, signal_number: int) -> None:
    try:
        os.killpg(group, signal_number)
    except ProcessLookupError:  # the group is gone already
        pass


def _thrown(details: dict) -> str:
    """What an exception the page threw says (the protocol's exceptionDetails)."""
    return str(details.get("exception", {}).get("description") or details.get("text"))


def _shown(arg: dict) -> str:
    """A console argument as the console shows it."""
    if "value" in arg:
        return str(arg["value"])
    return str(arg.get("description", arg.get("type", "")))
