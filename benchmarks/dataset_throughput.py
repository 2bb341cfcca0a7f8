"""Dataset throughput of ``transmrsr sr-dataset``: volumes per minute, 1 process against N CPU processes.

Usage: ``python benchmarks/dataset_throughput.py [--preset tiny|small] [--volumes 8] [--processes 2]
[--launcher torchrun|accelerate] [--size 64 72 64] [--scale 4] [--fusion] [--json out.json]``

A BIDS dataset of ``--volumes`` thick-slice T1w scans is made from blocks of the ICBM152 2009a T1
(shipped with nilearn) at ``--size`` voxels, averaged ``--scale`` times along the axial axis; a
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
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_dataset(root: Path, n: int, size: tuple[int, int, int], scale: int) -> None:
    import importlib.resources

    import nibabel as nib
    import numpy as np

    from transmrsr.data.degradation import simulate_thick, thick_affine

    t1 = importlib.resources.files("nilearn.datasets") / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    img = nib.load(str(t1))
    data = np.asarray(img.dataobj, dtype=np.float32)
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "throughput", "BIDSVersion": "1.9.0"}))
    rng = np.random.default_rng(0)
    for i in range(n):
        start = [int(rng.integers(20, max(21, s - z - 20))) for s, z in zip(data.shape, size)]
        block = data[start[0] : start[0] + size[0], start[1] : start[1] + size[1], start[2] : start[2] + size[2]]
        affine = img.affine.copy()
        affine[:3, 3] += affine[:3, :3] @ np.array(start)
        folder = root / f"sub-{i + 1:03d}" / "anat"
        folder.mkdir(parents=True)
        nib.save(
            nib.Nifti1Image(simulate_thick(block, 2, scale), thick_affine(affine, 2, scale)),
            folder / f"sub-{i + 1:03d}_T1w.nii.gz",
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(root: Path, out: Path, model: Path, processes: int, fusion: bool, launcher: str = "torchrun") -> float:
    """Wall seconds of one ``sr-dataset`` run of ``processes`` processes (1: plain ``python -m``)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    tail = [
        "-m",
        "transmrsr",
        "sr-dataset",
        str(root),
        str(out),
        "--model",
        str(model),
        "--quiet",
        "--fusion" if fusion else "--no-fusion",
        "--device",
        "cpu",
    ]
    if processes == 1:
        cmd = [sys.executable, *tail]
    elif launcher == "accelerate":
        env["HF_HOME"] = str(out.parent / "hf")  # no accelerate config file of the user's applies
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(free_port()),
            *tail,
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(processes),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            *tail,
        ]
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
        make_dataset(tmp / "raw", args.volumes, tuple(args.size), args.scale)
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
