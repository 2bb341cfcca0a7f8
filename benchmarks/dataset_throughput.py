"""Dataset throughput of ``transmrsr sr-dataset``: volumes per minute, 1 process against N CPU processes.

Usage: ``python benchmarks/dataset_throughput.py [--preset tiny|small] [--volumes 8] [--processes 2]
[--launcher torchrun|accelerate] [--size 64 72 64] [--scale 4] [--fusion] [--json out.json]``

A BIDS dataset of ``--volumes`` thick-slice T1w scans is made (``benchmarks/bids_tree.py``) from blocks
of the ICBM152 2009a T1 (shipped with nilearn) at ``--size`` voxels, averaged ``--scale`` times along the axial axis; a
model of ``--preset`` (random weights: speed does not depend on them) is saved; then the whole
command runs, once as one process and once as ``--processes`` processes under
``python -m torch.distributed.run`` or ``accelerate launch --multi_gpu --num_processes N ... --device cpu``
(``--launcher``; accelerate's ``--cpu`` mode starts one process without MPI) with one torch thread each
(``OMP_NUM_THREADS=1``), into fresh derivatives folders; every volume must be ``done``. Wall time includes starting Python and torch and loading the model, as a
user sees it. Prints volumes per minute of each and the speed-up; on a machine with fewer free
cores than processes there is none to expect.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bids_tree import make_bids, random_starts
from benchmarks.launch import accelerate_launch, cpu_env, sr_dataset, torchrun


def run(root: Path, out: Path, model: Path, processes: int, fusion: bool, launcher: str = "torchrun") -> float:
    """Wall seconds of one ``sr-dataset`` run of ``processes`` processes (1: plain ``python -m``)."""
    env = cpu_env()
    tail = sr_dataset(root, out, model, "--fusion" if fusion else "--no-fusion", "--device", "cpu")
    if processes == 1:
        cmd = [sys.executable, *tail]
    elif launcher == "accelerate":
        env["HF_HOME"] = str(out.parent / "hf")  # no accelerate config file of the user's applies
        cmd = [*accelerate_launch("--multi_gpu", "--num_processes", str(processes)), *tail]
    else:
        cmd = [*torchrun(processes), *tail]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or not (out / "transmrsr_summary.tsv").is_file():
        raise SystemExit(f"sr-dataset failed ({processes} processes):\n{proc.stderr[-3000:]}")
    rows = (out / "transmrsr_summary.tsv").read_text().splitlines()[1:]
    if any("\tdone\t" not in r for r in rows):
        raise SystemExit("not every volume was done:\n" + "\n".join(rows))
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", choices=["tiny", "small"])
    ap.add_argument("--volumes", type=int, default=8)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--launcher", default="torchrun", choices=["torchrun", "accelerate"])
    ap.add_argument("--size", type=int, nargs=3, default=[64, 72, 64], help="HR block (voxels) before thickening")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--fusion", action="store_true")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()

    import torch

    from transmrsr import TransMRSR, TransMRSRConfig

    with tempfile.TemporaryDirectory(prefix="transmrsr-throughput-") as tmp:
        tmp = Path(tmp)
        size = tuple(args.size)
        make_bids(tmp / "raw", random_starts(args.volumes, size), size, args.scale)
        torch.manual_seed(0)
        cfg = TransMRSRConfig.from_preset(args.preset)
        model = TransMRSR(cfg)
        model.truncation.set_centroids(torch.randn(cfg.num_centroids, cfg.style_dim))
        folder = model.save_pretrained(tmp / f"model-{args.preset}")
        results = {}
        for n in (1, args.processes):
            s = run(tmp / "raw", tmp / f"deriv-{n}", folder, n, args.fusion, args.launcher)
            results[n] = {"seconds": round(s, 2), "volumes_per_minute": round(60 * args.volumes / s, 2)}
            print(f"{n} process(es): {args.volumes} volumes in {s:.1f} s = {60 * args.volumes / s:.1f} volumes/min")
    speedup = results[1]["seconds"] / results[args.processes]["seconds"]
    print(
        f"speed-up with {args.processes} processes ({args.launcher}): {speedup:.2f}x "
        f"({os.cpu_count()} CPU cores on this machine, "
        f"preset {args.preset}, {args.volumes} volumes of {'x'.join(map(str, args.size))} at x{args.scale})"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "preset": args.preset,
                    "launcher": args.launcher,
                    "volumes": args.volumes,
                    "size": args.size,
                    "scale": args.scale,
                    "fusion": args.fusion,
                    "cpu_count": os.cpu_count(),
                    "results": results,
                    "speedup": round(speedup, 3),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
