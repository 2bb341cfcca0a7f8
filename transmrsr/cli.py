"""The ``transmrsr`` command line (also ``python -m transmrsr``).

Sub-commands:

* ``transmrsr sr INPUT OUTPUT [--model M] [--phi F] [--scale R] [--axis A] [--no-fusion] [--device D] [--batch-size B]``
* ``transmrsr simulate HR LR --scale R --axis A [--profile box|gaussian]``
* ``transmrsr evaluate SR HR [--mask M] [--lr LR | --scale R --axis A] [--dice] [--json]``
* ``transmrsr train-gan --data DIR --preset P --out DIR [--max-steps N] [--batch-size B] [--resume]``
* ``transmrsr fit-centroids --gan DIR [--num-samples M] [--clusters K]``
* ``transmrsr train-sr --data DIR --gan DIR --scale R --preset P --out DIR [--max-steps N] [--epochs E] [--phi F]
  [--no-perceptual] [--resume] [--ablation no-gp|no-sdt|no-mref|no-sc] [--arch transmrsr|edsr]``
* ``transmrsr prepare-ixi IXI-T1.tar [IXI-T2.tar] --out DIR [--no-register] [--limit N]``
* ``transmrsr prepare-packaged --out DIR [--cache DIR] [--test NAME]``
* ``transmrsr info [--preset P | --model DIR_OR_REPO]`` — sizes and switches of a model.

Every error about the user's input ends with exit code 2 and one line on stderr that names the
file and the problem; no output file is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__


def _cmd_info(args: argparse.Namespace) -> int:
    from .config import TransMRSRConfig
    from .models import EDSR, TransMRSR, load_sr_model

    if args.model:
        model = load_sr_model(args.model, revision=args.revision)
        source = args.model
    else:
        model = TransMRSR(TransMRSRConfig.from_preset(args.preset))
        source = f"preset {args.preset}"
    cfg = model.config
    if isinstance(model, EDSR):  # the CNN baseline (train-sr --arch edsr): no prior, no truncation
        info = {
            "source": source,
            "architecture": "EDSR",
            "img_size": cfg.img_size,
            "parameters": model.num_parameters(),
            "channels": cfg.channels,
            "num_blocks": cfg.num_blocks,
        }
    else:
        info = {
            "source": source,
            "architecture": "TransMRSR",
            "preset": cfg.preset,
            "img_size": cfg.img_size,
            "parameters": model.num_parameters(),
            "num_latents": cfg.num_latents,
            "centroids_fitted": model.truncation.is_fitted,
            "phi": cfg.phi,
            "ablations": {
                "generative_prior": cfg.use_generative_prior,
                "sdt": cfg.use_sdt,
                "mref_cwss": cfg.use_cwss,
                "skip_connection": cfg.use_skip,
            },
        }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:18s} {value}")
    return 0


#: Bundled default weights, one folder per scale (see checkpoints/README.md).
CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def default_model_dir(scale: int) -> Path:
    return CHECKPOINTS / f"transmrsr-small-t1-x{scale}"


def _load_model(spec: str | None, scale: int, revision: str | None = None):
    from .hub import PretrainedLoadError
    from .models import load_sr_model

    if spec is None:
        folder = default_model_dir(scale)
        if not (folder / "model.safetensors").is_file():
            raise PretrainedLoadError(
                f"{folder}: no bundled weights for x{scale} in this installation; pass --model with a weights "
                "folder or a Hugging Face repo id"
            )
        spec = str(folder)
    return load_sr_model(spec, revision=revision)  # TransMRSR, or an EDSR baseline folder


def _cmd_sr(args: argparse.Namespace) -> int:
    import time

    import torch

    from .data.io import load_volume
    from .inference import resolve_geometry, super_resolve_file

    if args.phi is not None and not 0.0 <= args.phi <= 1.0:
        raise ValueError(f"--phi must lie in [0, 1], got {args.phi}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    vol = load_volume(args.input)  # validate before loading a model
    _, scale = resolve_geometry(vol, args.scale, args.axis)
    model = _load_model(args.model, scale, args.revision)
    if args.device:
        try:
            torch.empty(0, device=args.device)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"--device {args.device!r} is not usable here ({exc})") from None
    t0 = time.perf_counter()
    result, axis, factor = super_resolve_file(
        vol,
        args.output,
        model,
        scale=args.scale,
        axis=args.axis,
        phi=args.phi,
        **({} if args.fusion is None else {"fusion": args.fusion}),
        device=args.device,
        batch_size=args.batch_size,
        show_progress=not args.quiet,
    )
    if not args.quiet:
        print(
            f"{args.output}: {result.sr.shape} voxels, axis {axis} x{factor}, {result.slices_run} slices run "
            f"({result.canvas}) in {time.perf_counter() - t0:.1f} s"
        )
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .inference import simulate_file

    lr = simulate_file(args.hr, args.lr, args.scale, args.axis, args.profile)
    if not args.quiet:
        print(f"{args.lr}: {lr.shape} voxels, axis {args.axis} averaged x{args.scale} ({args.profile} profile)")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from .data.degradation import simulate_thick
    from .data.io import VolumeError, load_volume
    from .evaluation import evaluate, format_table

    sr, hr = load_volume(args.sr), load_volume(args.hr)
    if sr.shape != hr.shape:
        raise VolumeError(f"{args.sr}: shape {sr.shape} differs from the HR's {hr.shape} ({args.hr})")
    if not np.allclose(sr.affine, hr.affine, atol=1e-3):
        raise VolumeError(f"{args.sr}: its affine differs from the HR's ({args.hr}); they are not on the same grid")
    if args.lr:
        lr = load_volume(args.lr)
        ratios = np.array(lr.zooms) / np.array(hr.zooms)
        axis = int(np.argmax(ratios))
        factor = int(round(ratios[axis]))
        if factor < 2:
            raise VolumeError(f"{args.lr}: voxel sizes are not coarser than the HR's along any axis")
        lr_data = lr.data
    else:
        if args.scale is None or args.axis is None:
            raise VolumeError(
                f"{args.hr}: give --lr (the thick-slice input) or --scale and --axis, so that cubic and trilinear "
                "interpolation can be scored beside the SR"
            )
        axis, factor = args.axis, args.scale
        lr_data = simulate_thick(hr.data, axis, factor)
    mask = None
    if args.mask:
        from .data.io import load_mask

        mask = load_mask(args.mask)
        if mask.shape != hr.shape:
            raise VolumeError(f"{args.mask}: mask shape {mask.shape} differs from the HR's {hr.shape}")
        if not mask.any():
            raise VolumeError(f"{args.mask}: the mask is empty")
        if mask.shape != hr.shape:
            raise VolumeError(f"{args.mask}: mask shape {mask.shape} differs from the HR's {hr.shape}")
        if not mask.any():
            raise VolumeError(f"{args.mask}: the mask is empty")
    rows = evaluate(sr.data, hr.data, lr_data, axis, factor, mask=mask, with_dice=args.dice)
    if args.json:
        print(json.dumps({"axis": axis, "scale": factor, "rows": [r.as_dict() for r in rows]}, indent=2))
    else:
        print(format_table(rows))
    return 0


def _cmd_train_gan(args: argparse.Namespace) -> int:
    from .config import GANTrainConfig
    from .training import train_gan

    opts = GANTrainConfig(
        data=args.data, out=args.out, preset=args.preset, img_size=args.img_size, batch_size=args.batch_size,
        max_steps=args.max_steps, resume=args.resume, seed=args.seed, checkpoint_every=args.checkpoint_every, sample_every=args.sample_every,
        lr_g=args.lr_g, lr_d=args.lr_d, augment=not args.no_augment, log_every=args.log_every,
    )
    train_gan(opts)
    return 0


def _cmd_fit_centroids(args: argparse.Namespace) -> int:
    from .training import fit_generator_centroids

    c = fit_generator_centroids(args.gan, args.num_samples, args.clusters, seed=args.seed)
    print(f"{args.gan}: {c.shape[0]} centroids fitted from {args.num_samples} latents and stored with the generator")
    return 0


def _cmd_train_sr(args: argparse.Namespace) -> int:
    from .config import SRTrainConfig
    from .training import train_sr

    if args.no_perceptual:
        print("train-sr: perceptual terms off (--no-perceptual): the loss is L1 only; recorded in log.jsonl and the model card")
    opts = SRTrainConfig(
        data=args.data, out=args.out, gan=args.gan or "", init=args.init or "", preset=args.preset, img_size=args.img_size, scale=args.scale, thick_axis=args.axis,
        profile=args.profile, batch_size=args.batch_size, max_steps=args.max_steps, epochs=args.epochs, lr=args.lr,
        phi=args.phi, perceptual=not args.no_perceptual, vgg_weights=args.vgg_weights, resume=args.resume,
        ablation=args.ablation, seed=args.seed, checkpoint_every=args.checkpoint_every, augment=not args.no_augment,
        log_every=args.log_every, val_fraction=args.val_fraction, lr_step_epochs=args.lr_step_epochs, arch=args.arch,
    )
    train_sr(opts)
    return 0


def _cmd_prepare_ixi(args: argparse.Namespace) -> int:
    from .data.ixi import prepare_ixi

    register = None if not args.no_register else False
    files = prepare_ixi(args.tarballs, args.out, register=register, limit=args.limit, progress=print)
    print(f"{args.out}: {len(files)} volume(s) written on the 182x218x181 1 mm MNI grid")
    return 0


def _cmd_prepare_packaged(args: argparse.Namespace) -> int:
    from .data.packaged import prepare_packaged

    manifest = prepare_packaged(args.out, cache=args.cache, test=args.test)
    n_train = sum(v["role"] == "train" for v in manifest["volumes"])
    print(f"{args.out}: {n_train} training volume(s) in train/, held-out {manifest['test']} in test/ (sources.json lists licences)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transmrsr", description="TransMRSR brain MRI super-resolution")
    parser.add_argument("--version", action="version", version=f"transmrsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    sr = sub.add_parser("sr", help="super-resolve a thick-slice NIfTI volume")
    sr.add_argument("input", help="thick-slice .nii / .nii.gz")
    sr.add_argument("output", help="output .nii / .nii.gz (written atomically)")
    sr.add_argument("--model", help="weights folder or Hub repo id (default: bundled weights for the scale)")
    sr.add_argument("--revision", help="Hub revision for --model")
    sr.add_argument("--phi", type=float, help="truncation level in [0, 1] (default: the model's)")
    sr.add_argument("--scale", type=int, help="slice-thickness factor (default: from the voxel sizes)")
    sr.add_argument("--axis", type=int, help="thick voxel axis 0, 1 or 2 (default: from the voxel sizes)")
    sr.add_argument(
        "--fusion", action=argparse.BooleanOptionalAction, default=None,
        help="average the SR of both planes that contain the thick axis (default: on; --no-fusion runs one plane, "
        "about half the time and 0.25-0.4 dB lower brain PSNR on the bundled weights)",
    )
    sr.add_argument("--device", help="torch device, e.g. cpu or cuda (default: CUDA when available)")
    sr.add_argument("--batch-size", type=int, default=8, help="slices per forward pass (default 8)")
    sr.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    sr.set_defaults(func=_cmd_sr)

    sim = sub.add_parser("simulate", help="make a thick-slice volume from a high-resolution one")
    sim.add_argument("hr", help="high-resolution .nii / .nii.gz")
    sim.add_argument("lr", help="output thick-slice .nii / .nii.gz")
    sim.add_argument("--scale", type=int, required=True, help="slice-thickness factor, e.g. 4 or 8")
    sim.add_argument("--axis", type=int, required=True, help="voxel axis to thicken (0, 1 or 2)")
    sim.add_argument("--profile", default="box", help="slice profile: box (mean of r slices) or gaussian")
    sim.add_argument("--quiet", action="store_true")
    sim.set_defaults(func=_cmd_simulate)

    ev = sub.add_parser("evaluate", help="PSNR / SSIM (/ tissue Dice) of an SR volume against the HR")
    ev.add_argument("sr", help="super-resolved volume")
    ev.add_argument("hr", help="high-resolution reference on the same grid")
    ev.add_argument("--mask", help="binary mask volume (default: the HR's foreground)")
    ev.add_argument("--lr", help="the thick-slice input, for the interpolation baselines")
    ev.add_argument("--scale", type=int, help="factor, when --lr is not given (LR simulated from HR)")
    ev.add_argument("--axis", type=int, help="thick axis, when --lr is not given")
    ev.add_argument("--dice", action="store_true", help="also tissue Dice (dipy HMRF; takes minutes)")
    ev.add_argument("--json", action="store_true", help="print JSON")
    ev.set_defaults(func=_cmd_evaluate)

    def train_common(p: argparse.ArgumentParser, steps_default: int | None) -> None:
        p.add_argument("--data", required=True, help="folder of HR .nii / .nii.gz volumes (searched recursively)")
        p.add_argument("--out", required=True, help="output folder (weights, training_state.pt, log.jsonl)")
        p.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
        p.add_argument("--batch-size", type=int, default=6)
        p.add_argument("--img-size", type=int, help="training canvas in pixels, a power of two (default: the preset's, 256 for small)")
        p.add_argument("--max-steps", type=int, default=steps_default)
        p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints")
        p.add_argument("--log-every", type=int, default=10, help="steps between log.jsonl records")
        p.add_argument("--no-augment", action="store_true", help="no flips / transpose / intensity augmentation")

    gan = sub.add_parser("train-gan", help="stage 1: train the StyleSwin generative prior on HR slices")
    train_common(gan, 10000)
    gan.add_argument("--lr-g", type=float, default=2e-4)
    gan.add_argument("--lr-d", type=float, default=2e-4)
    gan.add_argument("--sample-every", type=int, default=500, help="steps between sample grids (samples/)")
    gan.set_defaults(func=_cmd_train_gan)

    cen = sub.add_parser("fit-centroids", help="fit the truncation centroids of a stage-1 generator")
    cen.add_argument("--gan", required=True, help="stage-1 output folder")
    cen.add_argument("--num-samples", type=int, default=60000, help="latents sampled from the mapping network")
    cen.add_argument("--clusters", type=int, default=None, help="k-means clusters (default: the model's, 8)")
    cen.add_argument("--seed", type=int, default=0)
    cen.set_defaults(func=_cmd_fit_centroids)

    tsr = sub.add_parser("train-sr", help="stage 2: fine-tune TransMRSR for super-resolution")
    train_common(tsr, None)
    tsr.add_argument("--gan", help="stage-1 output folder (the generative prior and its centroids)")
    tsr.add_argument(
        "--init", help="fine-tune this saved SR model (folder or Hub id; same preset, canvas and ablation) "
        "instead of starting from the prior, e.g. checkpoints/transmrsr-small-t1-x4",
    )
    tsr.add_argument("--scale", type=int, required=True, help="slice-thickness factor, e.g. 4 or 8")
    tsr.add_argument("--axis", type=int, default=2, help="thick axis used to simulate training pairs (default 2)")
    tsr.add_argument("--profile", default="box", choices=["box", "gaussian"])
    tsr.add_argument("--epochs", type=int, default=100)
    tsr.add_argument("--lr", type=float, default=1e-4)
    tsr.add_argument("--lr-step-epochs", type=int, default=30, help="halve the learning rate every this many epochs")
    tsr.add_argument(
        "--val-fraction", type=float, default=0.2,
        help="share of subjects held out for validation / early stopping; 0: none, train on all (default 0.2)",
    )
    tsr.add_argument("--phi", type=float, default=None, help="truncation level used in training (default: preset's)")
    tsr.add_argument("--no-perceptual", action="store_true", help="L1 only: skip the VGG19 content/style terms")
    tsr.add_argument("--vgg-weights", help="VGG19 safetensors file or folder (default: timm/vgg19.tv_in1k via the Hub)")
    tsr.add_argument("--ablation", choices=["no-gp", "no-sdt", "no-mref", "no-sc"])
    tsr.add_argument(
        "--arch", default="transmrsr", choices=["transmrsr", "edsr"],
        help="network: transmrsr (default) or edsr, the CNN baseline trained with the same data, loss and schedule "
        "(--gan and --phi are not used)",
    )
    tsr.set_defaults(func=_cmd_train_sr)

    ixi = sub.add_parser("prepare-ixi", help="IXI T1/T2 tarballs -> 1 mm 182x218x181 MNI-grid volumes")
    ixi.add_argument("tarballs", nargs="+", help="IXI-T1.tar and/or IXI-T2.tar")
    ixi.add_argument("--out", required=True, help="output folder (T1/ and T2/ inside)")
    ixi.add_argument("--no-register", action="store_true", help="do not use antspyx even if installed")
    ixi.add_argument("--limit", type=int, help="at most this many volumes per tarball")
    ixi.set_defaults(func=_cmd_prepare_ixi)

    pkg = sub.add_parser("prepare-packaged", help="real 1 mm T1s shipped in pip packages -> train/ and a held-out test/")
    pkg.add_argument("--out", required=True, help="output folder (train/, test/, masks/, sources.json)")
    pkg.add_argument("--cache", help="where downloaded packages are kept (default: OUT/cache)")
    pkg.add_argument("--test", default="icbm152-2009a", help="held-out subject (default icbm152-2009a)")
    pkg.set_defaults(func=_cmd_prepare_packaged)

    info = sub.add_parser("info", help="show the sizes and switches of a preset or a saved model")
    src = info.add_mutually_exclusive_group()
    src.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    src.add_argument("--model", help="weights folder or Hugging Face Hub repo id")
    info.add_argument("--revision", help="Hub revision (branch, tag or commit) for --model")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError
    from .data.io import VolumeError
    from .hub import PretrainedLoadError
    from .losses import PerceptualWeightsError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (PretrainedLoadError, ConfigError, VolumeError, ValueError, FileExistsError, PerceptualWeightsError) as exc:
        print(f"transmrsr {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"transmrsr {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal error: still one line, traceback on request
        if os.environ.get("TRANSMRSR_DEBUG"):
            raise
        print(
            f"transmrsr {args.command}: internal error: {exc.__class__.__name__}: {' '.join(str(exc).split())} "
            "(set TRANSMRSR_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
