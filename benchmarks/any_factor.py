"""Any thickness factor, with and without per-scan adaptation, beside cubic, in one run.

Usage::

    python benchmarks/any_factor.py --subject mni152nlin6asym [--factors 3 4 5 6 8 3.3]
        [--strategies grid] [--adapt-steps 150] [--threads 2] [--crop-slices 80] [--json out.json]
    python benchmarks/any_factor.py --data DATA ...          # the validation heads of a prepared data folder
    python benchmarks/any_factor.py --volume HEAD.nii.gz --mask BRAIN.nii.gz ...   # another validation head
    python benchmarks/any_factor.py --subject icbm152-2009a ...                     # the TEST subject: report only

Subjects: ``--data DATA`` (the ``val`` volumes listed in ``DATA/sources.json``, each scored in its
brain mask when it has one, else in its head mask), ``mni152nlin6asym`` (the FSL template through
``transmrsr.data.packaged``, fetched with pip into ``--cache``, with its brain mask; note that the
bundled weights were trained on it), any ``--volume``/``--mask`` pair, and ``icbm152-2009a`` (the
project's TEST subject, nilearn's ICBM152 2009a: reported, never used to choose anything). Each volume is reoriented to RAS; thick slices are
simulated along the axial axis (voxel axis 2) with :func:`transmrsr.data.degradation.simulate_acquisition`
(box profile, or ``--profile``/``--thickness-ratio`` for Gaussian profiles and gaps) at each factor,
served by the bundled x4 / x8 models with each ``--strategies`` choice, with ``--adapt-steps``
of per-scan adaptation (0: none), and scored inside the brain mask (PSNR / SSIM, HR data range)
beside cubic interpolation of the same LR. ``--crop-slices`` keeps that many central coronal
planes (voxel axis 1) to fit a short budget. Times are wall seconds on ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.provenance import Timer, command_line, header_line
from transmrsr import TransMRSR
from transmrsr.adapt import AdaptOptions
from transmrsr.data.degradation import SliceProfile, simulate_acquisition
from transmrsr.evaluation.metrics import psnr, ssim
from transmrsr.inference import Acquisition, super_resolve_acquisition

REPO = Path(__file__).resolve().parents[1]
AXIS = 2
VALIDATION = "mni152nlin6asym"
TEST = "icbm152-2009a"


def load_subjects(args: argparse.Namespace) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(name, HR (X, Y, Z) float32 RAS, mask bool)]`` for the subjects asked for."""
    from transmrsr.data import packaged

    out = []
    if args.data:
        # a folder from the lead's data preparation: its sources.json names the validation volumes
        root = Path(args.data)
        manifest = json.loads((root / "sources.json").read_text())
        for v in manifest["volumes"]:
            if v.get("role") != "val":
                continue
            key = "brain_mask" if v.get("brain_mask") else "head_mask"
            hr, _ = packaged._canonical(root / v["file"])
            mask, _ = packaged._canonical(root / v[key])
            out.append((f"{v['name']} ({key.replace('_', ' ')})", hr, mask > 0.5))
    if args.volume:
        if not args.mask:
            raise SystemExit("--volume needs --mask (a brain mask on the same grid)")
        hr, _ = packaged._canonical(Path(args.volume))
        mask, _ = packaged._canonical(Path(args.mask))
        out.append((Path(args.volume).name, hr, mask > 0.5))
    for name in args.subject or ([] if out else [VALIDATION]):
        if name == TEST:
            hr, _, mask = packaged.held_out_t1()
            out.append((TEST + " (TEST subject, brain mask)", hr, mask > 0))
            continue
        src = next(s for s in packaged.SOURCES if s.name == name)
        cache = Path(args.cache)
        hr, _ = packaged._canonical(packaged.fetch(src, cache))
        mask, _ = packaged._canonical(packaged.fetch(src, cache, src.brain_mask))
        out.append((name + " (brain mask)", hr, mask > 0.5))
    return out


def crop(hr: np.ndarray, mask: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    if not n or n >= hr.shape[1]:
        return hr, mask
    s = (hr.shape[1] - n) // 2
    return hr[:, s : s + n], mask[:, s : s + n]


def run_subject(args: argparse.Namespace, name: str, hr: np.ndarray, mask: np.ndarray, models: dict) -> list[dict]:
    hr, mask = crop(hr, mask, args.crop_slices)
    rows = []
    for r in args.factors:
        thickness = r * args.thickness_ratio
        profile = SliceProfile(spacing=r, thickness=thickness, kind=args.profile)
        lr = simulate_acquisition(hr, AXIS, profile)
        acq = Acquisition(
            axis=AXIS,
            zooms=(1.0, 1.0, float(r)),
            factors=(1.0, 1.0, float(r)),
            slice_thickness=float(thickness),
            profile=args.profile,
            n_thin=hr.shape[AXIS],
        )
        cubic_row = None
        for strategy in args.strategies:
            for steps in sorted(set([0] + args.adapt_steps)):
                adapt = None
                if steps:
                    adapt = AdaptOptions(steps=steps, max_seconds=args.adapt_seconds, seed=args.seed, lr=args.adapt_lr)
                with Timer() as timer:
                    res = super_resolve_acquisition(
                        models.__getitem__,
                        lr,
                        acq,
                        strategy=strategy,
                        adapt=adapt,
                        fusion=args.fusion,
                        show_progress=False,
                    )
                seconds = timer.seconds
                if cubic_row is None:
                    cubic_row = {
                        "subject": name,
                        "factor": r,
                        "method": "cubic",
                        "psnr": psnr(res.cubic, hr, mask),
                        "ssim": ssim(res.cubic, hr, mask),
                        "seconds": None,
                    }
                    rows.append(cubic_row)
                    print(_fmt(cubic_row), flush=True)
                row = {
                    "subject": name,
                    "factor": r,
                    "method": f"TransMRSR x{res.plan.model_factor} {strategy}"
                    + (f" +adapt {res.adapt.steps} steps" if steps else ""),
                    "psnr": psnr(res.sr, hr, mask),
                    "ssim": ssim(res.sr, hr, mask),
                    "seconds": seconds,
                    "adapt_seconds": res.seconds["adapt"],
                }
                rows.append(row)
                print(_fmt(row), flush=True)
    return rows


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    models = {m: TransMRSR.from_pretrained(REPO / "checkpoints" / f"transmrsr-small-t1-x{m}").eval() for m in (4, 8)}
    rows, subjects = [], []
    for name, hr, mask in load_subjects(args):
        subjects.append(f"{name} {tuple(crop(hr, mask, args.crop_slices)[0].shape)}")
        rows += run_subject(args, name, hr, mask, models)
    return {
        "subjects": subjects,
        "profile": args.profile,
        "thickness_ratio": args.thickness_ratio,
        "fusion": args.fusion,
        "threads": args.threads,
        "rows": rows,
    }


def _fmt(row: dict) -> str:
    t = "" if row["seconds"] is None else f"{row['seconds']:.1f} s"
    return f"| {row['subject'].split(' (')[0]} | x{row['factor']:g} | {row['method']} | {row['psnr']:.2f} | {row['ssim']:.4f} | {t} |"


def table(res: dict, command: str) -> str:
    """The markdown table of :func:`run`'s result, under a provenance line naming ``command``."""
    lines = [
        header_line(res["threads"], extra=f"command: `{command}`"),
        f"subjects: {'; '.join(res['subjects'])}; thick axis 2, {res['profile']} profile, thickness "
        f"{res['thickness_ratio']:g} x spacing, fusion {res['fusion']}, {res['threads']} threads",
        "",
        "| subject | factor | method | PSNR in mask (dB) | SSIM in mask | time |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_fmt(r) for r in res["rows"]]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--subject", nargs="*", choices=[VALIDATION, TEST], help=f"packaged subjects (default {VALIDATION})")
    p.add_argument("--data", help="a prepared data folder (sources.json): its validation ('val') volumes")
    p.add_argument("--volume", help="another validation head (NIfTI), with --mask")
    p.add_argument("--mask", help="brain mask of --volume")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "transmrsr-packaged"))
    p.add_argument("--factors", type=float, nargs="+", default=[3, 4, 5, 6, 8, 3.3])
    p.add_argument("--strategies", nargs="+", default=["grid"], choices=["grid", "direct", "thick"])
    p.add_argument("--adapt-steps", type=int, nargs="*", default=[150], help="0 or more step counts (0 always runs)")
    p.add_argument("--adapt-seconds", type=float, default=240.0)
    p.add_argument("--adapt-lr", type=float, default=AdaptOptions.lr)
    p.add_argument("--profile", default="box", choices=["box", "gaussian"])
    p.add_argument("--thickness-ratio", type=float, default=1.0, help="slice thickness over spacing (< 1: a gap)")
    p.add_argument("--no-fusion", dest="fusion", action="store_false")
    p.add_argument("--crop-slices", type=int, default=None, help="keep this many central coronal planes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    args = p.parse_args()
    res = run(args)
    print()
    print(table(res, command_line(__file__, sys.argv[1:])))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
