"""benchmarks/speed.py: the --quick path on the tiny preset, without the authors' code."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_speed_quick_tiny_skips_missing_authors_repo(tmp_path):
    empty = tmp_path / "authors"
    empty.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "speed.py"),
            "--quick",
            "--presets",
            "tiny",
            "--authors",
            str(empty),
            "--devices",
            "cpu",
            "--threads",
            "1",
            "--repeats",
            "2",
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("# ") and "torch " in out and "threads" in out and "commit " in out and "CPU " in out
    assert f"authors' TGP7: skipped: --authors {empty} does not hold the authors' repository" in out
    rows = [line for line in out.splitlines() if line.startswith("| ours | `tiny` | cpu | fp32 |")]
    assert [r.split("|")[5].strip() for r in rows] == ["1", "2"]  # --quick: batches 1 and 2
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert float(cells[5]) > 0 and float(cells[6]) > 0 and float(cells[7]) > 0  # ms, slices/s, RSS
    assert "authors' `TGP7`" not in out and "`paper`" not in out and "`small`" not in out
    assert "Identical outputs" not in out


def test_gpu_check_runs_its_stages_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.py, meant for a lent GPU, tried on the CPU: the correctness table
    (CPU against itself: exactly 0 in fp32; bf16 autocast within bf16's error) is written, and a
    speed stage that runs past its limit is cut off and reported, not waited for."""
    import os

    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "gpu_check.py"),
            "run",
            "--device",
            "cpu",
            "--check-presets",
            "tiny",
            "--no-compile",
            "--threads",
            "1",
            "--limit",
            "8",
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OUT": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    table = (tmp_path / "correctness.md").read_text()
    rows = {
        r.split("|")[2].strip(): [c.strip() for c in r.strip("|").split("|")]
        for r in table.splitlines()
        if r.startswith("| tiny |")
    }
    assert set(rows) == {"fp32", "bf16 autocast"}
    assert float(rows["fp32"][2]) == 0.0 and rows["fp32"][4].startswith("yes")
    assert 0.0 < float(rows["bf16 autocast"][2]) < 5e-2 and rows["bf16 autocast"][4].startswith("yes")
    assert "speed: rc timed out" in proc.stdout
    assert (tmp_path / "speed.err").exists() and not (tmp_path / "speed_compile.md").exists()
    assert "# correctness" in proc.stdout
