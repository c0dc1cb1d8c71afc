"""Headless Chromium for tests, driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: Chromium reads commands on fd 3 and writes replies on fd 4, each
a JSON message ended by a NUL byte). No WebDriver and no websocket library: the protocol's
device emulation gives a page an exact viewport (a headless window is at least 500 px wide),
and its screenshots cover the whole page.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPLY_TIMEOUT_SECONDS = 30.0
EXIT_TIMEOUT_SECONDS = 10
#: Headless, as root (no sandbox), and quiet on the network: no updates, sync or QUIC probes.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


#: Run by a small Python process: put the pipe ends on fds 3 and 4, then become Chromium.
_ON_FDS_3_AND_4 = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.dup2(int(sys.argv[2]), 4)
os.execv(sys.argv[3], sys.argv[3:])
"""


def _pipe_above_4() -> tuple[int, int]:
    """A pipe whose ends are above fd 4, so that moving them to fds 3 and 4 cannot clobber
    one with the other."""
    ends = []
    for fd in os.pipe():
        ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(fd)
    return ends[0], ends[1]


def chromium_binary() -> str | None:
    """Debian's chromium (apt-get install chromium), or None."""
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    )


class Browser:
    """One Chromium with a fresh profile in ``profile`` and one page; use it as a context
    manager, so that the process is stopped when the test ends."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser, self._commands = _pipe_above_4()
        self._replies, from_browser = _pipe_above_4()
        trampoline = [sys.executable, "-c", _ON_FDS_3_AND_4, str(to_browser), str(from_browser)]
        chromium = [
            binary,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
        ]
        self.process = subprocess.Popen(
            [*trampoline, *chromium],
            pass_fds=(to_browser, from_browser),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._last_id = 0
        self._events: list[dict[str, Any]] = []
        self._session: str | None = None
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            attached = self.call("Target.attachToTarget", targetId=target, flatten=True)
            self._session = attached["sessionId"]
            self.call("Page.enable")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command (to the page once attached) and return its result."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params}
        if self._session is not None:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result
            self._events.append(reply)

    def open(self, url: str, width: int, height: int, *, mobile: bool = False) -> None:
        """Load ``url`` in a viewport of ``width`` x ``height`` CSS pixels; ``mobile`` as a
        phone shows it (the page's viewport meta tag applies)."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )
        self._events.clear()
        navigation = self.call("Page.navigate", url=url)
        if "errorText" in navigation:
            raise RuntimeError(f"{url}: {navigation['errorText']}")
        self._wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        reply = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def screenshot(self) -> bytes:
        """The whole page as a PNG, not just the viewport."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.call(
            "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True
        )
        return base64.b64decode(shot["data"])

    def close(self) -> None:
        if self.process.poll() is None:
            self._session = None
            try:
                self.call("Browser.close")
                self.process.wait(EXIT_TIMEOUT_SECONDS)
            except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(EXIT_TIMEOUT_SECONDS)
        for fd in (self._commands, self._replies):
            try:
                os.close(fd)
            except OSError:
                pass  # closed already

    def _wait_for(self, event: str) -> dict[str, Any]:
        while True:
            for index, message in enumerate(self._events):
                if message.get("method") == event:
                    del self._events[: index + 1]
                    return message
            self._events.append(self._receive())

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + REPLY_TIMEOUT_SECONDS
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([self._replies], [], [], max(0.0, remaining))
            if not readable:
                raise TimeoutError(f"no message from Chromium in {REPLY_TIMEOUT_SECONDS} s")
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium exited ({self.process.poll()})")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        decoded: dict[str, Any] = json.loads(message)
        return decoded
