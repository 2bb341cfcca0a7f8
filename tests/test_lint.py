"""The code style gate: ruff's lint rules and its formatter (pyproject.toml) over the whole repository.

Run inside the suite so that the README's two commands (set-up, ``pytest``) are all a contributor and CI need;
``ruff check --fix .`` and ``ruff format .`` fix most findings."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff")
    cmd = [exe] if exe else [sys.executable, "-m", "ruff"]
    return subprocess.run([*cmd, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_lint_is_clean():
    proc = _ruff("check", "--no-cache", ".")
    assert proc.returncode == 0, (
        f"ruff check found problems (ruff check --fix . fixes many):\n{proc.stdout}{proc.stderr}"
    )


def test_ruff_format_is_clean():
    proc = _ruff("format", "--check", "--no-cache", ".")
    assert proc.returncode == 0, f"files ruff format would change (run ruff format .):\n{proc.stdout}{proc.stderr}"


def test_lint_gate_really_catches_an_unused_import(tmp_path: Path):
    """The gate is not vacuous: the same configuration flags a file with an unused import and bad formatting."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx=1\n")
    config = str(REPO / "pyproject.toml")
    lint = _ruff("check", "--no-cache", "--config", config, str(bad))
    fmt = _ruff("format", "--check", "--no-cache", "--config", config, str(bad))
    assert lint.returncode == 1 and "F401" in lint.stdout
    assert fmt.returncode == 1
