"""``transmrsr sr-dataset`` under ``accelerate launch`` with 2 CPU processes (issue 20): each volume is
done once, by process ``i % 2``, the summary lists every input, and a second launch resumes (only the
volume whose sidecar is missing is redone). Also: ``accelerate launch --cpu --num_processes 2``
starts a single process here (accelerate's multi-CPU mode needs MPI), which the run says on stderr.

The two processes come from ``accelerate launch --multi_gpu --num_processes 2 ... --device cpu``:
on a machine without GPUs accelerate starts them through torch.distributed.run, the same way it
does on GPUs, and ``--device cpu`` keeps them on the CPU wherever it runs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from test_bids import read_summary

from benchmarks.bids_tree import HEAD_STARTS, make_bids
from benchmarks.launch import accelerate_launch, cpu_env, sr_dataset
from transmrsr.data.bids import derivative_path

pytestmark = pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate is not installed")


def launch(tmp: Path, root: Path, out: Path, model: Path, *mode: str) -> subprocess.CompletedProcess:
    """``accelerate launch <mode> -m transmrsr sr-dataset ...`` with no accelerate config file
    (HF_HOME in ``tmp``), one torch thread per process, offline."""
    env = cpu_env(
        "TRANSMRSR_DEBUG", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", HF_HOME=str(tmp / "hf")
    )
    cmd = [*accelerate_launch(*mode), *sr_dataset(root, out, model, "--no-fusion", "--device", "cpu")]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp)


def sidecar(out: Path, root: Path, src: Path) -> Path:
    sr = out / derivative_path(src.relative_to(root))
    return sr.with_name(sr.name.replace(".nii.gz", ".json"))


def test_accelerate_two_cpu_processes_shard_resume_and_single_process_warning(tmp_path, tiny_dir):
    root, out = tmp_path / "raw", tmp_path / "deriv"
    inputs = make_bids(root, HEAD_STARTS[:2], extras=True, bad=True)  # 2 thick T1w and an isotropic one (a failed row)
    names = sorted(p.relative_to(root).as_posix() for p in inputs)

    proc = launch(tmp_path, root, out, tiny_dir, "--multi_gpu", "--num_processes", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]  # a bad volume is a summary row, not a failed launch
    ours = [line for line in proc.stderr.splitlines() if line.startswith("transmrsr sr-dataset:")]
    assert len(ours) == 1 and "sub-99" in ours[0] and "isotropic" in ours[0], proc.stderr[-3000:]
    rows = read_summary(out)
    assert sorted(r["input"] for r in rows) == names  # every input once
    by_rank = {r["input"]: int(r["rank"]) for r in rows}
    assert [by_rank[n] for n in names] == [i % 2 for i in range(len(names))]  # inputs r, r + 2, ... on rank r
    status = {r["input"]: r["status"] for r in rows}
    assert status == {n: ("failed" if "sub-99" in n else "done") for n in names}
    for src in inputs[:2]:
        doc = json.loads(sidecar(out, root, src).read_text())
        assert doc["Rank"] == by_rank[src.relative_to(root).as_posix()] and doc["Device"] == "cpu"

    # resumed by a second 2-process launch: only the output whose sidecar is gone (a killed run) is redone
    kept = out / derivative_path(inputs[0].relative_to(root))  # rank 0's volume, done: not redone
    stamp = kept.stat().st_mtime_ns
    sidecar(out, root, inputs[1]).unlink()  # rank 1's volume
    proc = launch(tmp_path, root, out, tiny_dir, "--multi_gpu", "--num_processes", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_summary(out)
    assert sorted(r["input"] for r in rows) == names
    status = {r["input"]: r["status"] for r in rows}
    redone = inputs[1].relative_to(root).as_posix()
    assert status == {n: ("failed" if "sub-99" in n else "done" if n == redone else "skipped") for n in names}
    assert {int(r["rank"]) for r in rows} == {0, 1}
    assert kept.stat().st_mtime_ns == stamp
    assert sidecar(out, root, inputs[1]).is_file()

    # accelerate's --cpu with 2 processes: one process here (no MPI); said on stderr, every volume done by it
    proc = launch(tmp_path, root, out, tiny_dir, "--cpu", "--num_processes", "2")
    # one process: the bad volume gives sr-dataset's status 2, as without a launcher (accelerate reports it as 1)
    assert proc.returncode != 0 and "returned non-zero exit status 2" in proc.stderr, proc.stderr[-3000:]
    assert "accelerate launch --cpu started a single process" in proc.stderr, proc.stderr[-3000:]
    rows = read_summary(out)
    assert sorted(r["input"] for r in rows) == names and {r["rank"] for r in rows} == {"0"}
    assert {r["status"] for r in rows if "sub-99" not in r["input"]} == {"skipped"}
