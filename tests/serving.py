"""Helpers for the tests of `storyteller serve`: a real server in a subprocess, and a
websocket client that speaks textual-serve's protocol (what the browser's page does)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import ROOT

ESCAPES = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


class Served:
    def __init__(self, process: subprocess.Popen, port: int, lines: list[str]):
        self.process, self.port, self.lines = process, port, lines
        self.url = f"http://127.0.0.1:{port}/"

    def games(self) -> list[int]:
        return children(self.process.pid)


@contextmanager
def serving(*options: str, env: dict | None = None, ready_timeout: float = 60):
    """`storyteller serve` on 127.0.0.1 and a free port; yields a `Served` once it answers."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "game", "serve", "--port", str(port), *options],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    served = Served(process, port, [])
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"serve exited: {process.stdout.read()}")
            try:
                if get(served.url, timeout=2)[0] in (200, 503):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("serve did not answer")
            time.sleep(0.2)
        yield served
    finally:
        process.terminate()
        try:
            out, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        served.lines[:] = (out or "").splitlines()


class Terminal:
    """One browser tab's game, through the websocket as textual.js drives it."""

    def __init__(self, session, url: str, width: int = 100, height: int = 30):
        self.session, self.url, self.size = session, url, (width, height)
        self.raw = b""
        self.arrivals: list[tuple[float, int]] = []  # (when, len(raw) after it) for each message
        self.messages: list = []  # the page's own messages (JSON text: downloads, links)
        self.ws = None
        self.closed = False

    async def __aenter__(self) -> "Terminal":
        width, height = self.size
        self.ws = await self.session.ws_connect(f"{self.url}ws?width={width}&height={height}")
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()

    @property
    def text(self) -> str:
        return ESCAPES.sub(b"", self.raw).decode("utf-8", "replace")

    async def read(self, seconds: float = 0.2) -> None:
        import aiohttp

        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(self.ws.receive(), left)
            except asyncio.TimeoutError:
                return
            if message.type == aiohttp.WSMsgType.BINARY:
                self.raw += message.data
                self.arrivals.append((time.monotonic(), len(self.raw)))
            elif message.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(message.data))
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                self.closed = True
                return

    async def wait_for(self, text: str, timeout: float = 60, since: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while text not in ESCAPES.sub(b"", self.raw[since:]).decode("utf-8", "replace"):
            if time.monotonic() > deadline or self.closed:
                raise AssertionError(f"{text!r} never appeared; the terminal showed:\n{self.text[-2000:]}")
            await self.read(0.2)

    async def type(self, keys: str, pause: float = 0.06) -> None:
        """Keys as the page sends them for a person typing: one 'stdin' message per keystroke,
        `pause` seconds apart (keys that arrive together can be applied out of order by
        Textual, a Backspace after the letters behind it: docs/serving.md; no person types
        that fast)."""
        for key in keys:
            await self.ws.send_str(json.dumps(["stdin", key]))
            await asyncio.sleep(pause)

    async def paste(self, text: str) -> None:
        """A paste arrives as one 'stdin' message holding all of it."""
        await self.ws.send_str(json.dumps(["stdin", text]))

    def mark(self) -> int:
        return len(self.raw)
