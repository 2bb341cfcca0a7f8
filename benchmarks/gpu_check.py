"""The GPU checks of the speed work in one call, for a session that is lent a CUDA machine.

Two steps::

    python benchmarks/gpu_check.py prepare      # here, on the CPU machine (needs the package registry)
    python benchmarks/gpu_check.py run          # there, from the repository root, with .gpu_carry carried

``prepare`` fills ``.gpu_carry/`` (ignored by git): wheels of the pure-Python packages our code
imports that the device image lacks (nibabel, nilearn: the volume I/O and the ICBM152 template),
and a copy of the authors' code (from ``--authors``, ``$TRANSMRSR_AUTHORS_REPO`` or
``~/.cache/transmrsr/authors``) without its git folder.

``run`` (about 6-9 minutes on one GPU):

1. installs the carried wheels where the imports fail (``--no-index``: nothing is fetched);
2. **correctness**: ``tiny`` and ``paper`` with random weights and centroids, batch 2: CUDA fp32,
   CUDA bf16 autocast and (``paper``) ``torch.compile`` against the CPU fp32 output, as
   ``||out - ref|| / ||ref - x||`` (the error relative to the predicted residual) and max |diff|;
   every output checked finite;
3. ``speed.py`` on CUDA in fp32 and bf16 at batch 1 and 16 (ours and the authors' net, interleaved
   pairs, CUDA max allocated), the whole 182x218x181 volume at x4 for ``small`` and ``paper``
   (bf16 autocast, batch 32), then ``torch.compile`` rows for the paper preset at batch 16;
4. writes everything under ``$OUT`` (else ``gpu_out/``) and prints the tables last.

Each stage has its own time limit, so a slow compile cannot eat the lease.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
    sys.path.insert(0, str(REPO))
CARRY = REPO / ".gpu_carry"
WHEELS = ("nibabel", "nilearn")


def prepare(authors: str | None) -> int:
    wheels = CARRY / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(wheels), *WHEELS],
        check=True,
    )
    from benchmarks.authors import find_authors_repo

    src, why = find_authors_repo(authors, allow_clone=False)
    if src is None:
        print(f"no authors' repository ({why}): run benchmarks/speed.py once (it clones it), or pass --authors DIR")
        return 1
    dst = CARRY / "authors"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git"))
    size = sum(f.stat().st_size for f in CARRY.rglob("*") if f.is_file()) / 2**20
    print(f"{CARRY.name}/: {size:.1f} MB ({', '.join(p.name for p in sorted(wheels.iterdir()))}; authors' code)")
    print('next, on the device: run(command="python3 benchmarks/gpu_check.py run", carry=[".gpu_carry"])')
    return 0


def ensure_imports() -> None:
    missing = [m for m in WHEELS if importlib.util.find_spec(m) is None]
    if missing:
        files = [str(p) for p in (CARRY / "wheels").glob("*.whl")]
        print(f"installing the carried wheels for {missing}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", *files], check=True)


def correctness(device: str, presets: list[str], compile_preset: str | None) -> list[str]:
    """One line per preset and mode: relative error against the CPU fp32 output."""
    import torch

    from transmrsr import TransMRSR, TransMRSRConfig

    lines = []
    for preset in presets:
        torch.manual_seed(0)
        cfg = TransMRSRConfig.from_preset(preset)
        model = TransMRSR(cfg).eval()
        model.truncation.set_centroids(torch.randn(cfg.num_centroids, cfg.style_dim) * 2)
        with torch.no_grad():  # a residual well away from 0, so that relative errors mean something
            model.recon_out.weight.mul_(10)
        x = torch.rand(2, 1, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            ref = model(x, phi=0.7).double()
        scale = float((ref - x.double()).norm())
        model.to(device)
        xd = x.to(device)
        # default arguments bind this iteration's input and compiled module (the loop goes on to other presets)
        runs = {"fp32": lambda m, xd=xd: m(xd, phi=0.7)}
        runs["bf16 autocast"] = lambda m, xd=xd: _autocast(device)(m, xd)
        if preset == compile_preset:
            compiled = torch.compile(model)
            runs["compile + bf16 autocast"] = lambda m, c=compiled, xd=xd: _autocast(device)(c, xd)
        for name, fn in runs.items():
            t0 = time.perf_counter()
            try:
                with torch.inference_mode():
                    out = fn(model).float().cpu().double()
            except Exception as exc:  # noqa: BLE001 -- reported as a line, the other checks go on
                lines.append(
                    f"| {preset} | {name} | failed: {type(exc).__name__}: {str(exc).splitlines()[0][:150]} | | |"
                )
                continue
            rel = float((out - ref).norm()) / max(scale, 1e-12)
            ok = bool(torch.isfinite(out).all())
            lines.append(
                f"| {preset} | {name} | {rel:.2e} | {float((out - ref).abs().max()):.2e} | "
                f"{'yes' if ok else 'NO'} ({time.perf_counter() - t0:.1f} s) |"
            )
        model.to("cpu")
        del model
    return lines


def _autocast(device: str):
    import torch

    def run(m, x):
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            return m(x, phi=0.7)

    return run


def stage(name: str, cmd: list[str], out: Path, limit: int) -> str:
    """Run ``cmd`` with a time limit; stdout to ``out/name.md``, stderr to ``out/name.err`` (speed.py
    prints its table at the end: after a time-out, its progress lines in the ``.err`` file hold the
    figures measured so far)."""
    print(f"== {name}: {' '.join(cmd)} (limit {limit} s)", flush=True)
    t0 = time.perf_counter()
    with open(out / f"{name}.md", "w") as fo, open(out / f"{name}.err", "w") as fe:
        try:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
            rc = subprocess.run(cmd, stdout=fo, stderr=fe, timeout=limit, cwd=REPO, env=env).returncode
        except subprocess.TimeoutExpired:
            rc = "timed out"
    print(f"   {name}: rc {rc} in {time.perf_counter() - t0:.0f} s", flush=True)
    return (out / f"{name}.md").read_text()


def run(args: argparse.Namespace) -> int:
    out = Path(os.environ.get("OUT") or REPO / "gpu_out")
    out.mkdir(parents=True, exist_ok=True)
    ensure_imports()
    import torch

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available here")
        return 2
    from benchmarks.provenance import provenance

    head = provenance(gpu=device == "cuda")  # the correctness step runs here, on torch's default threads
    print(head, flush=True)
    authors = ["--authors", str(CARRY / "authors"), "--no-clone"] if (CARRY / "authors").is_dir() else ["--no-authors"]
    py = [sys.executable, str(REPO / "benchmarks" / "speed.py"), "--devices", device, "--threads", str(args.threads)]

    t0 = time.perf_counter()
    check = ["| preset | mode | ‖out − cpu‖ / ‖residual‖ | max abs diff | finite (time) |", "|---|---|---|---|---|"]
    check += correctness(device, args.check_presets, None if args.no_compile else "paper")
    (out / "correctness.md").write_text(head + "\n\n" + "\n".join(check) + "\n")
    print(f"== correctness in {time.perf_counter() - t0:.0f} s", flush=True)

    tables = [
        stage(
            "speed",
            py
            + [
                "--cuda-modes",
                "fp32",
                "bf16",
                "--batch",
                *map(str, args.batch),
                "--pairs",
                str(args.pairs),
                "--repeats",
                str(args.repeats),
                "--volume-presets",
                "small",
                "paper",
                "--volume-batch",
                str(args.volume_batch),
                *authors,
            ],
            out,
            args.limit,
        )
    ]
    if not args.no_compile:
        tables.append(
            stage(
                "speed_compile",
                py
                + [
                    "--cuda-modes",
                    "compile",
                    "--presets",
                    "paper",
                    "--batch",
                    str(max(args.batch)),
                    "--pairs",
                    "0",
                    "--repeats",
                    str(args.repeats),
                    "--no-volume",
                    *authors,
                ],
                out,
                args.compile_limit,
            )
        )
    print("\n# correctness\n\n" + "\n".join(check))
    for t in tables:
        print("\n" + t)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="fill .gpu_carry/ here")
    p.add_argument("--authors", metavar="DIR", default=None)
    r = sub.add_parser("run", help="the checks, on the lent machine")
    r.add_argument("--device", default="cuda", help="cuda (default); cpu only to try the script itself")
    r.add_argument("--check-presets", nargs="+", default=["tiny", "paper"])
    r.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    r.add_argument("--pairs", type=int, default=3)
    r.add_argument("--repeats", type=int, default=5)
    r.add_argument("--volume-batch", type=int, default=32)
    r.add_argument("--threads", type=int, default=8, help="CPU threads for the CPU parts (reference outputs)")
    r.add_argument("--limit", type=int, default=300, help="seconds for the fp32/bf16 speed stage")
    r.add_argument("--compile-limit", type=int, default=240, help="seconds for the torch.compile stage")
    r.add_argument("--no-compile", action="store_true")
    args = ap.parse_args(argv)
    return prepare(args.authors) if args.cmd == "prepare" else run(args)


if __name__ == "__main__":
    sys.exit(main())
