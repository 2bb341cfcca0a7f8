"""benchmarks/provenance.py: the header line every benchmark prints, its timer and its peak-memory readers;
and the scripts' import of it, as ``benchmarks.provenance`` also when run as ``python benchmarks/X.py``."""

from __future__ import annotations

import mmap
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import provenance as pv

REPO = Path(__file__).resolve().parents[1]


def test_header_line_names_date_commit_machine_torch_and_threads():
    line = pv.header_line(3, gpu=False, extra="batch 2")
    assert line.startswith("# ") and line.endswith("; batch 2")
    assert re.match(r"# \d{4}-\d\d-\d\d \d\d:\d\d ", line)
    for part in (", commit ", f", CPU {pv.cpu_model()} (", f", torch {torch.__version__}, 3 threads;"):
        assert part in line, part
    assert pv.provenance(gpu=False).endswith(f"{torch.get_num_threads()} threads")  # default: torch's setting
    sha = pv.git_commit()
    assert sha == "unknown" or re.fullmatch(r"[0-9a-f]{4,40}( \(with uncommitted changes\))?", sha)


def test_command_line():
    assert pv.command_line("/any/where/benchmarks/speed.py", ["--quick", 2, "a b"]) == (
        "python benchmarks/speed.py --quick 2 'a b'"
    )
    assert pv.command_line("speed.py", []) == "python benchmarks/speed.py"


def test_timer_and_median_seconds():
    with pv.Timer() as t:
        time.sleep(0.05)
    assert 0.045 < t.seconds < 5
    calls = []

    def fn() -> None:
        calls.append(len(calls))
        time.sleep(0.01 if len(calls) != 3 else 0.3)  # one slow timed call: the median ignores it

    assert 0.009 < pv.median_seconds(fn, repeats=3, warmup=2) < 0.25
    assert len(calls) == 5


def test_peak_rss_follows_a_large_allocation_and_resets():
    if sys.platform == "win32":
        pytest.skip("resource is POSIX only")
    resettable = pv.reset_peak_rss()
    before = pv.peak_rss_mb()
    # 96 MiB of fresh pages, touched: an anonymous mapping of its own, because a malloc'd array may reuse heap
    # pages an earlier test freed but left resident (then the RSS, and its peak, would not move)
    block = mmap.mmap(-1, 96 * 2**20)
    np.frombuffer(block, dtype=np.uint8)[:] = 1
    with_block = pv.peak_rss_mb()
    assert with_block - before > 80
    block.close()
    if resettable:
        assert pv.reset_peak_memory("cpu")
        assert pv.peak_memory_mb("cpu") < with_block - 50  # the mark starts again from what is resident now
    assert pv.peak_memory_mb("cpu") == pv.peak_rss_mb()


SCRIPTS = sorted(p.name for p in (REPO / "benchmarks").glob("*.py") if '__name__ == "__main__"' in p.read_text())


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_start_from_any_folder(script: str, tmp_path: Path):
    """Run as ``python benchmarks/X.py`` from another folder, only the script's folder is on sys.path: the script
    puts the repository root there for its ``benchmarks.…`` imports."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--help"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: ")
