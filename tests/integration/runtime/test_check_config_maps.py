"""``check-config`` also loads the Modbus mapping files: a broken map is refused there (exit 78,
the map's problem lines), not only when ``run`` starts."""

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
BROKEN = textwrap.dedent("""\
    registers:
      - {address: 200, name: Grid, source: rate, type: flaot32}
      - {address: 200, name: Solar, source: rate, type: float32, wordorder: CDAB}
    """)


def write_config(tmp_path: Path, modbus: str = "{enabled: true}") -> Path:
    good = tmp_path / "good-map.yaml"
    good.write_text("registers:\n  - {address: 300, name: Grid, source: rate, type: float32}\n")
    (tmp_path / "broken-map.yaml").write_text(BROKEN)
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(f"""\
        gateway: {{state_dir: {tmp_path / "state"}}}
        meters:
          - {{id: main, url: 'http://a.local', username: owner, password: '${{PW}}',
             modbus_unit_id: 1, modbus_mapping: broken-map.yaml}}
          - {{id: garage, url: 'http://b.local', username: owner, password: '${{PW}}',
             modbus_unit_id: 2, modbus_mapping: good-map.yaml}}
          - {{id: sun, url: 'http://c.local', username: owner, password: '${{PW}}',
             modbus_unit_id: 3, modbus_mapping: broken-map.yaml}}
        modbus: {modbus}
        """))
    return path


def check_config(path: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *(command or ("check-config",)),
                           "-c", str(path)], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env={**os.environ, "PW": "x"}, check=False)


def test_a_broken_mapping_file_exits_78_with_its_problem_lines(tmp_path: Path) -> None:
    result = check_config(write_config(tmp_path))
    broken = tmp_path / "broken-map.yaml"
    assert result.returncode == EXIT_CONFIG
    assert result.stdout == ""
    assert result.stderr.splitlines() == [  # once per file, however many meters use it
        f"{broken}: registers[0].type: unknown type 'flaot32' (did you mean 'float32'?)",
        f"{broken}: registers[1].wordorder: unknown key (did you mean 'word_order'?)",
    ]


def test_run_refuses_the_same_file_with_the_same_exit_code(tmp_path: Path) -> None:
    result = check_config(write_config(tmp_path), "run")
    assert result.returncode == EXIT_CONFIG
    assert "unknown type 'flaot32'" in result.stderr


def test_maps_are_not_loaded_while_modbus_is_off_as_run_does_not(tmp_path: Path) -> None:
    result = check_config(write_config(tmp_path, "{enabled: false}"))
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout == "ok: 3 meters (main, garage, sun)\n"
