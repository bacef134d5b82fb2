"""End-to-end harness: a real ``hygie serve`` process on loopback and Debian's Chromium, headless, driven by
Playwright. The browser comes from ``scripts/browser.sh`` (apt, as root in CI); Playwright never downloads one."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hygie.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    result = subprocess.run(["bash", str(ROOT / "scripts" / "browser.sh")], capture_output=True, text=True)
    assert result.returncode == 0, f"scripts/browser.sh failed: {result.stderr}"
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path


def start_server(settings: Settings, log: Path, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    environ = {**os.environ, "HYGIE_HOME": str(settings.home), **(env or {})}
    out = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "hygie", "serve", "--port", str(port)], env=environ, stdout=out, stderr=out
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hygie serve exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return Server(f"http://127.0.0.1:{port}", process, log)
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("hygie serve did not start within 60 s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[Server]:
    s = start_server(settings, tmp_path / "serve.log")
    yield s
    stop(s.process)


class Console:
    """Browser console errors and script errors: a CSP violation, a script failure or a 5xx shows up here.
    A 4xx answer to a page the test opens on purpose (a refusal it asserts) is not an error of the page."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def _console(self, message: object) -> None:
        text = message.text  # type: ignore[attr-defined]
        if message.type == "error" and not re.search(r"status of 4\d\d", text):  # type: ignore[attr-defined]
            self.errors.append(text)

    def attach(self, page: object) -> None:
        page.on("console", self._console)  # type: ignore[attr-defined]
        page.on("pageerror", lambda e: self.errors.append(str(e)))  # type: ignore[attr-defined]


@pytest.fixture
def new_page(browser: object) -> Iterator[object]:
    """``new_page()`` opens a page in a fresh browser context (its own cookies: one person each)."""
    contexts = []

    def make() -> tuple[object, Console]:
        context = browser.new_context()  # type: ignore[attr-defined]
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        console = Console()
        console.attach(page)
        page.on("dialog", lambda d: d.accept())
        return page, console

    yield make
    for context in contexts:
        context.close()
