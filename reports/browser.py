"""Open a report in real headless Chromium: take a screenshot, collect every
console message and uncaught exception, and evaluate checks in the page.

Chromium is driven over ``--remote-debugging-pipe`` (the DevTools protocol as
NUL-separated JSON on file descriptors 3 and 4), so no WebSocket client or other
package is needed::

    this process ──(fd 3: commands)──▶ chromium ──▶ renderer (the page)
                 ◀─(fd 4: replies, events: console, exceptions, log entries)──

Chromium runs in a session of its own, with a fresh profile directory; when the
check ends the browser is closed, its whole process group killed if anything is
left, and the profile removed, so nothing outlives :func:`check_page`.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FLAGS", "BrowserError", "PageCheck", "check_page", "find_chromium"]

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


_TRAMPOLINE = (
    "import fcntl, os, sys\n"
    "r, w = int(sys.argv[1]), int(sys.argv[2])\n"
    "hr, hw = fcntl.fcntl(r, fcntl.F_DUPFD, 10), fcntl.fcntl(w, fcntl.F_DUPFD, 10)\n"  # out of 3 and 4's way
    "os.dup2(hr, 3); os.dup2(hw, 4)\n"
    "for fd in {r, w, hr, hw} - {3, 4}: os.close(fd)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


class BrowserError(Exception):
    """Chromium could not be started or did not answer in time."""


@dataclass
class PageCheck:
    screenshot: str  # path of the PNG
    console: list[str] = field(default_factory=list)  # every console message, "type: text"
    errors: list[str] = field(default_factory=list)  # console errors/warnings, exceptions, failed loads
    results: dict[str, Any] = field(default_factory=dict)  # name -> value of each evaluated expression


def find_chromium() -> str | None:
    """The Chromium executable: $CHROMIUM, or the first of CANDIDATES on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if os.path.exists(env) else shutil.which(env)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Pipe:
    """The DevTools protocol over a pair of pipes, with deadlines on every read."""

    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.w, self.r = write_fd, read_fd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self.w, data) :]
        return self.next_id

    def _read_one(self, deadline: float) -> dict:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                raise BrowserError("Chromium did not answer in time")
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium closed the DevTools pipe (it exited)")
            self.buf += chunk
        raw, _, self.buf = self.buf.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None, *, timeout: float) -> dict:
        ident = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_one(deadline)
            if msg.get("id") == ident:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result") or {}
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, session: str, *, timeout: float) -> dict:
        for i, e in enumerate(self.events):
            if e["method"] == method and e.get("sessionId") == session:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_one(deadline)
            if msg.get("method") == method and msg.get("sessionId") == session:
                return msg
            if "method" in msg:
                self.events.append(msg)


def _describe(event: dict) -> tuple[str, bool]:
    """(text, is an error) of a console, exception or log event."""
    p = event.get("params") or {}
    method = event["method"]
    if method == "Runtime.consoleAPICalled":
        text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
        kind = p.get("type", "log")
        return f"console.{kind}: {text}", kind in ("error", "warning", "assert")
    if method == "Runtime.exceptionThrown":
        d = p.get("exceptionDetails") or {}
        text = (d.get("exception") or {}).get("description") or d.get("text") or "exception"
        return f"uncaught: {text}", True
    entry = p.get("entry") or {}
    return (
        f"log.{entry.get('level')} ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip(),
        entry.get("level") in ("error", "warning"),
    )


def check_page(
    path: str,
    screenshot: str,
    *,
    width: int = 1280,
    height: int = 2000,
    expressions: dict[str, str] | None = None,
    timeout: float = 60.0,
    executable: str | None = None,
    full_page: bool = False,
) -> PageCheck:
    """Load ``path`` (a local HTML file) in headless Chromium, evaluate each of
    ``expressions`` (JavaScript, JSON-serializable results) after the load event,
    and save a ``width`` × ``height`` screenshot to ``screenshot`` (the whole page
    with ``full_page``)."""
    exe = executable or find_chromium()
    if not exe:
        raise BrowserError("Chromium is not installed (Debian: apt-get install -y chromium)")
    url = "file://" + os.path.abspath(path)
    profile = tempfile.mkdtemp(prefix="poolbench-chromium-")
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    log = open(os.path.join(profile, "chromium.log"), "w+")  # noqa: SIM115 - closed in finally
    # A trampoline puts our pipe ends on fds 3 and 4, where --remote-debugging-pipe
    # expects them, then becomes Chromium (same pid, so the same process group).
    cmd = [
        sys.executable,
        "-c",
        _TRAMPOLINE,
        str(to_chrome_r),
        str(from_chrome_w),
        exe,
        *FLAGS,
        f"--user-data-dir={profile}",
        "--remote-debugging-pipe",
        f"--window-size={width},{height}",
        "about:blank",
    ]
    proc = None
    try:
        proc = subprocess.Popen(
            cmd,
            pass_fds=(to_chrome_r, from_chrome_w),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        to_chrome_r = from_chrome_w = -1
        pipe = _Pipe(to_chrome_w, from_chrome_r)
        result = _drive(pipe, url, screenshot, width, height, expressions or {}, timeout, full_page)
        try:
            pipe.call("Browser.close", timeout=10)
        except BrowserError:
            pass  # it may close the pipe before it answers
        return result
    except BrowserError as e:
        log.flush()
        log.seek(0)
        tail = log.read()[-1500:]
        raise BrowserError(f"{e}; chromium's output ends with:\n{tail}") from None
    finally:
        for fd in (to_chrome_r, from_chrome_w, to_chrome_w, from_chrome_r):
            if fd >= 0:
                os.close(fd)
        if proc is not None:
            _stop(proc)
        log.close()
        shutil.rmtree(profile, ignore_errors=True)


def _drive(
    pipe: _Pipe,
    url: str,
    screenshot: str,
    width: int,
    height: int,
    expressions: dict[str, str],
    timeout: float,
    full_page: bool,
) -> PageCheck:
    target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
    session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True}, timeout=timeout)["sessionId"]
    for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
        pipe.call(domain, session=session, timeout=timeout)
    pipe.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        session,
        timeout=timeout,
    )
    pipe.call("Page.navigate", {"url": url}, session, timeout=timeout)
    pipe.wait_event("Page.loadEventFired", session, timeout=timeout)
    check = PageCheck(screenshot)
    for name, expr in expressions.items():
        out = pipe.call(
            "Runtime.evaluate",
            {"expression": expr, "returnByValue": True, "awaitPromise": True},
            session,
            timeout=timeout,
        )
        if "exceptionDetails" in out:
            check.errors.append(f"check {name!r} threw: {out['exceptionDetails'].get('text')}")
        check.results[name] = (out.get("result") or {}).get("value")
    params: dict[str, Any] = {"format": "png"}
    if full_page:
        size = pipe.call("Page.getLayoutMetrics", session=session, timeout=timeout)["cssContentSize"]
        params.update(
            captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1}
        )
    shot = pipe.call("Page.captureScreenshot", params, session, timeout=timeout)
    with open(screenshot, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    # Everything the page said, including what arrived while we waited on replies.
    pipe.call("Runtime.evaluate", {"expression": "0"}, session, timeout=timeout)
    for event in pipe.events:
        if event.get("sessionId") != session or event["method"] not in (
            "Runtime.consoleAPICalled",
            "Runtime.exceptionThrown",
            "Log.entryAdded",
        ):
            continue
        text, is_error = _describe(event)
        check.console.append(text)
        if is_error:
            check.errors.append(text)
    return check


def _stop(proc: subprocess.Popen) -> None:
    """Wait for the browser to exit after Browser.close, then kill whatever is
    left of its process group (renderer, GPU and utility processes). The exited
    leader stays a zombie until ``proc.wait()``, so its group id cannot have been
    reused by anything else when we signal it."""
    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:
        fd = -1  # already reaped
    if fd >= 0:
        try:
            select.select([fd], [], [], 15)
        finally:
            os.close(fd)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait(timeout=15)
