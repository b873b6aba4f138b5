"""Headless Chromium driven over the DevTools protocol on a pipe (no websocket library,
no playwright): load a page, wait for a condition in it, read its DOM, screenshot it."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest


def chromium() -> str:
    """The Chromium binary (the test fails without it under CI, else is skipped)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed")
    return found


class Browser:
    """One headless Chromium with one page; commands go over ``--remote-debugging-pipe``
    (fd 3 in, fd 4 out, each message JSON ending with a NUL byte)."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 900) -> None:
        self.width = width
        to_chrome, self._to = os.pipe()
        self._from, from_chrome = os.pipe()

        def pipes() -> None:  # in the child: the protocol's fixed descriptors
            os.dup2(to_chrome, 3)
            os.dup2(from_chrome, 4)

        self.proc = subprocess.Popen(
            [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "about:blank"],
            preexec_fn=pipes, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer = b""
        self._next_id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width,
                  height=height, deviceScaleFactor=1, mobile=False)  # fmt: skip

    def call(self, method: str, *, session: bool = False, **params: Any) -> Any:
        """Send one command and return its result (events in between are skipped)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read(timeout=30.0)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from], [], [], max(left, 0))
            assert ready, "Chromium did not answer"
            chunk = os.read(self._from, 1 << 16)
            assert chunk, "Chromium exited"
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(raw))

    def open(self, url: str) -> None:
        """Navigate the page to ``url``."""
        self.call("Page.navigate", session=True, url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True)  # fmt: skip
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> None:
        """Wait until ``expression`` is truthy in the page."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.05)

    def dom(self) -> str:
        """The page's DOM as HTML."""
        return str(self.evaluate("document.documentElement.outerHTML"))

    def screenshot(self, path: Path) -> None:
        """A PNG of the whole page (its full height) at ``path``."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        clip = {"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1}
        shot = self.call("Page.captureScreenshot", session=True, format="png",
                         captureBeyondViewport=True, clip=clip)  # fmt: skip
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        """End Chromium."""
        try:
            self.call("Browser.close")
        except (AssertionError, OSError, RuntimeError):
            self.proc.kill()
        self.proc.wait(timeout=30)
        os.close(self._to)
        os.close(self._from)
