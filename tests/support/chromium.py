"""Headless Chromium for the status page tests (no tests here): a screenshot and the
rendered DOM of a URL, with a throw-away profile and nothing phoning home."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def chromium() -> str:
    """The Chromium binary; a missing one fails the run (never skips it)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed (apt-get install chromium; ./scripts/test "
                    "installs it)")
    return path


def _run(directory: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    profile = directory / "profile"
    profile.mkdir(parents=True, exist_ok=True)
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, timeout=120, check=True)


def dump_dom(url: str, directory: Path) -> str:
    return _run(directory, "--dump-dom", url).stdout.decode("utf-8")


def screenshot(url: str, directory: Path, size: tuple[int, int] = (1200, 2000)) -> bytes:
    png = directory / "screenshot.png"
    _run(directory, f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", url)
    return png.read_bytes()
