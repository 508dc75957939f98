"""``python -m gateway check-config`` as a real subprocess: exit codes and output streams."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.errors import EXIT_CONFIG, EXIT_OK

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def check_config(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EGAUGE_", "MQTT_"))}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "-c", str(path)],
        capture_output=True, text=True, timeout=60, cwd=REPO, env={**clean, **env}, check=False,
    )


def test_good_file_exits_0_and_lists_the_meters() -> None:
    result = check_config(REPO / "gateway.yaml", EGAUGE_MAIN_PASSWORD="a",
                          EGAUGE_GARAGE_PASSWORD="b")
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout == "ok: 2 meters (main, garage)\n"
    assert result.stderr == ""


def test_bad_file_exits_78_with_every_problem_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent("""\
        meters:
          - {id: main, url: 'http://a.local', username: owner, password: '${PW}',
             poll_interval_s: fast}
          - {id: main, url: 'http://b.local', username: owner, password: hunter2,
             modbus_unit_id: 2}
        mqtt: {prot: 1883}
        """))
    path.chmod(0o600)
    result = check_config(path, PW="x")
    assert result.returncode == EXIT_CONFIG
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "meters[0].poll_interval_s: must be a number > 0 (got 'fast')",
        "meters[1].id: duplicate meter id 'main' (also meters[0])",
        "mqtt.prot: unknown key (did you mean 'port'?)",
    ]
    assert "hunter2" not in result.stderr


def test_missing_file_exits_78(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    result = check_config(path)
    assert result.returncode == EXIT_CONFIG
    assert result.stderr == f"{path}: cannot read: No such file or directory\n"


def test_yaml_syntax_error_exits_78_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("meters:\n  - id: main\n   url: x\n")
    result = check_config(path)
    assert result.returncode == EXIT_CONFIG
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:3:")
    assert ": invalid YAML: " in lines[0]
