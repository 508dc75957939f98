"""``python -m gateway check-config`` on hostile files, as a real subprocess: every one exits 78
with its problem on stderr, one line each, and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.bounds import MAX_FILE_BYTES
from gateway.errors import EXIT_CONFIG

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "check-config", "-c", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO, check=False)

BOMB = "".join(f"{a}: &{a} [{', '.join([f'*{b}' if b else 'x'] * 9)}]\n"
               for a, b in zip("abcdefghi", [None, *"abcdefgh"], strict=True)) + "meters: *i\n"
FILES: dict[str, bytes] = {
    "deep_nesting": ("meters: " + "[" * 100_000).encode(),
    "alias_bomb": BOMB.encode(),
    "huge": b"# " + b"x" * MAX_FILE_BYTES,
    "binary": bytes(range(256)) * 64,
    "nul_and_surrogate": b'meters: [{id: "a\\0", url: "http://\\udc80"}]',
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_hostile_file_exits_78_with_one_line_problems(tmp_path: Path, name: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_bytes(FILES[name])
    path.chmod(0o600)
    result = check_config(path)
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert "Traceback" not in result.stderr
    problems = result.stderr.splitlines()
    assert problems
    assert all(line.startswith(str(path)) for line in problems), problems


@pytest.mark.parametrize("target", ["/dev/zero", "directory"])
def test_a_device_or_a_directory_as_the_config_exits_78(tmp_path: Path, target: str) -> None:
    path = tmp_path if target == "directory" else Path(target)
    result = check_config(path)
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"{path}: cannot read: not a regular file (a FIFO, a device or a directory)"]
