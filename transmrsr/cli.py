"""The ``transmrsr`` command line (also ``python -m transmrsr``).

Sub-commands:

* ``transmrsr sr INPUT OUTPUT [--model M] [--phi F] [--scale R] [--axis A] [--no-fusion] [--device D] [--batch-size B]
  [--adapt [--adapt-steps N] [--seed S]]`` — any factor 1.5 to 10 (docs/user-guide.md, "Any slice thickness");
  ``[--consistency PATH] [--uncertainty PATH [--uncertainty-method M] [--uncertainty-weighting W]]``: trust maps (docs/trust.md)
* ``transmrsr simulate HR LR --scale R --axis A [--profile box|gaussian]``
* ``transmrsr evaluate SR HR [--mask M] [--lr LR | --scale R --axis A] [--dice] [--json] [--protocol ours|authors]
  [--slice-axis N]``
* ``transmrsr train-gan --data DIR --preset P --out DIR [--max-steps N] [--batch-size B] [--resume]``
* ``transmrsr fit-centroids --gan DIR [--num-samples M] [--clusters K]``
* ``transmrsr train-sr --data DIR --gan DIR --scale R --preset P --out DIR [--max-steps N] [--epochs E] [--phi F]
  [--no-perceptual] [--resume] [--ablation no-gp|no-sdt|no-mref|no-sc|frozen-gp] [--arch transmrsr|edsr]``
* ``transmrsr prepare-ixi IXI-T1.tar [IXI-T2.tar] --out DIR [--no-register] [--limit N]``
* ``transmrsr prepare-packaged --out DIR [--cache DIR] [--test NAME]``
* ``transmrsr prepare-public SRC_DIR --out DIR [--packaged] | --list`` — the allow-listed public heads, split.
* ``transmrsr sr-dataset BIDS_ROOT OUT_DERIV [--suffix T1w] [--model M] [--phi F]`` — a whole BIDS dataset into
  derivatives (desc-transmrsr, JSON sidecars, summary TSV), resumable; under ``torchrun`` / ``accelerate launch``
  the volumes are shared among the processes (:mod:`transmrsr.batch`).
* ``transmrsr info [--preset P | --model DIR_OR_REPO]`` — sizes and switches of a model.

Every error about the user's input ends with exit code 2 and one line on stderr that names the
file and the problem; no output file is left behind. Before any model is loaded or image data
read, ``sr`` and ``simulate`` check the input's header (shape, RGB / complex voxels, voxel sizes,
memory, see :mod:`transmrsr.data.io`), ``--scale``, ``--device``, and that the output can be
written and is not the input; commands writing an ``--out`` folder check that it can be written.
Messages name only what the user typed (and files inside or folders above it). The library words
its errors neutrally ("the thick axis must be 0, 1 or 2"); where one names a parameter the user
set, the line shows that command's flag in its place ("--axis must be 0, 1 or 2"), see
:func:`error_text` and :mod:`transmrsr.errors`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__
from .serving import BUNDLED_ROOT, FactorNotServed, is_bundled, resolve_model


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


#: Bundled default weights, one folder per scale (their model cards: checkpoints/*/README.md).
CHECKPOINTS = BUNDLED_ROOT


#: Factors the bundled weights are trained at (any other factor is served by them, see the README).
BUNDLED_FACTORS = (4, 8)


def _load_model(spec: str | None, scale: int, revision: str | None = None):
    """The model ``--model`` names (None: the bundled weights for ``scale``), loaded; which weights that is
    comes from :func:`transmrsr.serving.resolve_model`, the app's rule too."""
    from .hub import PretrainedLoadError
    from .models import load_sr_model

    try:
        weights = resolve_model(spec, scale, bundled_root=CHECKPOINTS)
    except FactorNotServed as exc:  # names no installation folder: only what the user typed, and the flag
        raise PretrainedLoadError(f"{exc}; pass --model with a weights folder or a Hugging Face repo id") from None
    return load_sr_model(weights.source, revision=revision)  # TransMRSR, or an EDSR baseline folder


def check_device(spec: str | None) -> None:
    """Refuse a ``--device`` that torch cannot use here, in one line, before anything is loaded.

    ``None`` (the default: CUDA when available) is always accepted.
    """
    if spec is None:
        return
    import torch

    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {spec!r} is not a device name; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {spec}: no CUDA GPU is usable on this machine; use --device cpu, or leave --device out "
                "(a GPU is used when there is one)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            n = torch.cuda.device_count()
            raise ValueError(f"--device {spec}: this machine has {n} CUDA GPU(s), numbered from 0")
        return
    if dev.type == "cpu":
        return
    try:
        torch.empty(0, device=dev)
    except Exception as exc:  # torch raises several types (AssertionError, RuntimeError) here
        raise ValueError(f"--device {spec} is not usable here ({exc.__class__.__name__}); use --device cpu") from None


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (same resolved path, or hard / symbolic links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_writable_folder(folder: Path, for_what: str) -> None:
    """Refuse a folder that could not be written into, or created: the folder itself when it
    exists, else its nearest existing parent must be a folder that a file can be created in
    (tried with a temporary file, which also catches read-only file systems and runs as root).
    Nothing is left behind; a missing folder is created only when the output is written."""
    import tempfile

    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{for_what}: {probe} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".transmrsr-write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ValueError(f"{for_what}: cannot write into folder {probe} ({reason}); choose a writable folder") from None


def check_output_file(output: str | os.PathLike, inputs: list[str | os.PathLike]) -> None:
    """Refuse, before any work, an output file that could not be written or would replace an input.

    ``output`` must end in ``.nii`` / ``.nii.gz``, must not be a folder nor name one of ``inputs``
    (also through links), and its folder must be writable or creatable.
    """
    from .data.io import VolumeError

    out = Path(output)
    name = out.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        raise VolumeError(f"{out}: output name must end in .nii or .nii.gz")
    if out.is_dir():
        raise VolumeError(f"{out}: output is a folder; give a file name such as {out / 'sr.nii.gz'}")
    for src in inputs:
        if _same_file(out, Path(src)):
            raise VolumeError(
                f"{out}: the output is the input file {src}; choose another output name so the input is kept"
            )
    _check_writable_folder(out.parent, str(out))


def check_output_folder(folder: str | os.PathLike) -> None:
    """Refuse an output folder that is a file or that could not be created / written into."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, expected a folder")
    _check_writable_folder(out, f"--out {out}")


def _is_dicom(path: str) -> bool:
    from .data.dicom import is_dicom_input

    return is_dicom_input(path)


def _sr_dicom(args: argparse.Namespace) -> int:
    """``sr`` on a DICOM folder / zip / file: the series is converted by dcm2niix into a temporary
    folder (:func:`transmrsr.data.dicom.convert_dicom`, its sidecar carrying the slice thickness
    so that a gap reaches the SR), super-resolved as a NIfTI, and with ``--dicom-out`` also
    written as a derived DICOM series. Messages name the input and the series, never the
    temporary folder."""
    from .data.dicom import convert_dicom, write_derived_series
    from .data.io import VolumeError

    if not _is_dicom(args.input):
        raise VolumeError(
            f"{args.input}: --dicom-out needs a DICOM input (folder, .zip or DICOM file)", path=args.input
        )
    dicom_out = getattr(args, "dicom_out", None)
    check_output_file(args.output, [args.input])
    if dicom_out:
        try:
            import pydicom  # noqa: F401
        except ImportError:
            raise ValueError("--dicom-out needs pydicom: pip install pydicom") from None
        out = Path(dicom_out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"--dicom-out {out}: exists and is not an empty folder; choose a new folder")
        _check_writable_folder(out, f"--dicom-out {out}")
    with convert_dicom(args.input, series=getattr(args, "series", None)) as dicom:
        if not args.quiet:
            print(f"{args.input}: {dicom.series.describe()}")
        inner = argparse.Namespace(**{**vars(args), "input": str(dicom.nifti), "dicom_out": None, "series": None})
        try:
            rc = _cmd_sr(inner)
        except (VolumeError, ValueError) as exc:  # the message names the input, not the temporary NIfTI
            from .errors import NamesParameters, ParameterError

            text = (exc.template if isinstance(exc, NamesParameters) else str(exc)).replace(
                str(dicom.nifti), dicom.public_path()
            )
            params = exc.params if isinstance(exc, NamesParameters) else None
            if isinstance(exc, VolumeError):
                raise VolumeError(text, path=args.input, params=params) from None
            raise ParameterError(text, params=params) from None
        if dicom_out:
            import nibabel as nib
            import numpy as np

            img = nib.load(args.output)
            files = write_derived_series(
                np.asarray(img.dataobj, dtype=np.float32),
                img.affine,
                dicom,
                dicom_out,
                slice_axis=dicom.series.slice_axis,
            )
            if not args.quiet:
                print(f"{dicom_out}: derived DICOM series of {len(files)} images")
    return rc


def _cmd_sr(args: argparse.Namespace) -> int:
    import time

    from .data.io import check_output_size, check_scale, header_factor, load_volume, read_header

    if args.phi is not None and not 0.0 <= args.phi <= 1.0:
        raise ValueError(f"--phi must lie in [0, 1], got {args.phi}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    check_scale(args.scale, args.input)
    check_device(args.device)
    if getattr(args, "dicom_out", None) or _is_dicom(args.input):  # a DICOM series: converted first (issue 20)
        return _sr_dicom(args)
    if args.axis is not None and args.axis not in (0, 1, 2):  # before any warning is computed along it
        raise ValueError(f"{args.input}: --axis must be 0, 1 or 2, got {args.axis}")
    info = read_header(args.input)  # header only: nothing is allocated for a refused file
    check_output_file(args.output, [args.input])
    trust_paths = _check_trust_args(args)
    declared = header_factor(info)
    factor = args.scale if args.scale is not None else (declared[1] if declared else None)
    if factor is not None:
        check_scale(factor, args.input, what=None if args.scale is not None else "the slice-thickness factor")
        check_output_size(info, factor)
    vol = load_volume(args.input)
    from .trust import ADAPT_GAIN_NOT_T1, input_range_warnings

    # far from the training data (geometry always; contrast only for the bundled T1 weights)
    bundled = is_bundled(args.model)
    for text in input_range_warnings(vol.data, vol.affine, args.axis, contrast=bundled):
        print(f"warning: {os.path.basename(str(args.input))}: {text}", file=sys.stderr)
    if bundled:  # the bundled weights are T1: say so when the file says it is something else
        from .studio import contrast_guess

        hint = contrast_guess(
            os.path.basename(str(args.input)), info.header if hasattr(info, "header") else None, sidecar=str(args.input)
        )
        if hint:
            print(
                f"warning: {os.path.basename(str(args.input))} does not look T1-weighted ({hint}); the bundled "
                "weights are trained on T1 only, the result may be wrong"
                + ("" if args.adapt else f"; --adapt fits them to this scan first ({ADAPT_GAIN_NOT_T1})"),
                file=sys.stderr,
            )
    # any factor (issue 17): served by the bundled x4 / x8 models, or by --model at the nearest integer
    from .inference import detect_acquisition, plan_serving, super_resolve_acquisition_file

    acq = detect_acquisition(vol, axis=args.axis, scale=args.scale)
    served = BUNDLED_FACTORS if bundled else (max(1, round(acq.factor)),)
    plan = plan_serving(acq, served)
    model = _load_model(args.model, plan.model_factor, args.revision)
    adapt = None
    if args.adapt:
        from tqdm.auto import tqdm

        from .adapt import AdaptOptions

        bar = tqdm(total=args.adapt_steps, unit="step", desc="adapting", disable=args.quiet, leave=False)
        adapt = AdaptOptions(steps=args.adapt_steps, seed=args.seed, progress=lambda i, n: bar.update(1))
    t0 = time.perf_counter()
    maps = None
    try:
        if trust_paths:
            result, maps = _sr_with_trust(args, vol, acq, model, served, adapt)
        else:
            result = super_resolve_acquisition_file(
                vol,
                args.output,
                lambda m: model,
                served=served,
                axis=args.axis,
                scale=args.scale,
                adapt=adapt,
                phi=args.phi,
                **({} if args.fusion is None else {"fusion": args.fusion}),
                device=args.device,
                batch_size=args.batch_size,
                show_progress=not args.quiet,
            )
    finally:
        if args.adapt:
            bar.close()
    if not args.quiet:
        note = f", adapted {result.adapt.steps} steps in {result.adapt.seconds:.0f} s" if result.adapt else ""
        print(
            f"{args.output}: {result.sr.shape} voxels, axis {acq.axis} x{acq.factor:g} (x{plan.model_factor} model, "
            f"{plan.strategy}){note}, {result.slices_run} slices run in {time.perf_counter() - t0:.1f} s"
        )
        if maps is not None and args.consistency:
            print(
                f"{args.consistency}: consistency, {maps.consistency.describe()}; cubic interpolation: "
                f"{100 * maps.consistency_cubic.relative:.2f} %"
            )
        if maps is not None and maps.uncertainty is not None:
            print(
                f"{args.uncertainty}: uncertainty ({maps.method}, {maps.weighting} weighting, "
                f"{maps.extra_runs} extra run(s) in {maps.seconds.get('uncertainty', 0.0):.1f} s)"
            )
    return 0


def _trust_side_path(path: str | os.PathLike) -> Path:
    """Where ``--consistency PATH`` puts the input-grid map: ``PATH`` with ``_lrgrid`` before the extension."""
    p = Path(path)
    name = p.name
    ext = next((e for e in (".nii.gz", ".nii") if name.lower().endswith(e)), "")
    return p.with_name(name[: len(name) - len(ext)] + "_lrgrid" + name[len(name) - len(ext) :])


def _check_trust_args(args: argparse.Namespace) -> list[Path]:
    """Check ``--consistency`` / ``--uncertainty`` / ``--uncertainty-method`` before any work; return
    the paths that will be written besides OUTPUT (empty when neither is asked)."""
    from .trust import DEFAULT_UNCERTAINTY, UNCERTAINTY_METHODS, UNCERTAINTY_WEIGHTINGS

    weighting = getattr(args, "uncertainty_weighting", None)
    if weighting is not None and weighting not in UNCERTAINTY_WEIGHTINGS:
        raise ValueError(f"--uncertainty-weighting {weighting!r} is not one of {', '.join(UNCERTAINTY_WEIGHTINGS)}")
    if weighting is not None and not getattr(args, "uncertainty", None):
        raise ValueError("--uncertainty-weighting needs --uncertainty PATH")
    method = getattr(args, "uncertainty_method", None)
    if method is not None and method not in UNCERTAINTY_METHODS:
        raise ValueError(f"--uncertainty-method {method!r} is not one of {', '.join(UNCERTAINTY_METHODS)}")
    if method is not None and not getattr(args, "uncertainty", None):
        raise ValueError("--uncertainty-method needs --uncertainty PATH")
    paths: list[Path] = []
    if getattr(args, "consistency", None):
        paths += [Path(args.consistency), _trust_side_path(args.consistency)]
    if getattr(args, "uncertainty", None):
        if (method or DEFAULT_UNCERTAINTY) == "planes" and args.fusion is False:
            raise ValueError(
                "--uncertainty-method planes compares the two fused planes; it cannot run with --no-fusion"
            )
        paths.append(Path(args.uncertainty))
    taken = [Path(args.output)]
    for p in paths:
        check_output_file(p, [args.input])
        if any(_same_file(p, q) for q in taken):
            raise ValueError(
                f"{p}: named twice among the outputs (SR, --consistency, --uncertainty); give each its own name"
            )
        taken.append(p)
    return paths


def _sr_with_trust(args: argparse.Namespace, vol, acq, model, served, adapt):
    """``sr`` with ``--consistency`` / ``--uncertainty``: the same SR (written to OUTPUT as without
    them) and its trust maps (:mod:`transmrsr.trust`); all outputs are written, or none."""
    from .data.io import save_volume
    from .trust import DEFAULT_UNCERTAINTY, DEFAULT_WEIGHTING, super_resolve_with_trust

    method = (args.uncertainty_method or DEFAULT_UNCERTAINTY) if args.uncertainty else None
    weighting = getattr(args, "uncertainty_weighting", None) or DEFAULT_WEIGHTING
    result, maps = super_resolve_with_trust(
        lambda m: model,
        vol.data,
        acq,
        uncertainty=method,
        weighting=weighting,
        served=served,
        adapt=adapt,
        phi=args.phi,
        **({} if args.fusion is None else {"fusion": args.fusion}),
        device=args.device,
        batch_size=args.batch_size,
        show_progress=not args.quiet,
    )
    sr_affine = acq.output_affine(vol.affine)

    def header(text: str):
        h = vol.header.copy()
        h["descrip"] = text[:79].encode()  # a map is not a simulated scan: drop the input's tag
        h["cal_min"], h["cal_max"] = 0.0, 0.0
        return h

    written: list[Path] = []
    try:
        save_volume(args.output, result.sr, sr_affine, header=vol.header)
        written.append(Path(args.output))
        if args.consistency:
            rel = f"transmrsr consistency |degrade(SR)-LR| rel={maps.consistency.relative:.4f}"
            save_volume(args.consistency, maps.consistency_sr, sr_affine, header=header(rel))
            written.append(Path(args.consistency))
            save_volume(_trust_side_path(args.consistency), maps.consistency_lr, vol.affine, header=header(rel))
            written.append(_trust_side_path(args.consistency))
        if args.uncertainty:
            save_volume(
                args.uncertainty,
                maps.uncertainty,
                sr_affine,
                header=header(f"transmrsr uncertainty {method} {weighting}"),
            )
    except BaseException:
        for p in written:  # all outputs or none
            p.unlink(missing_ok=True)
        raise
    return result, maps


def _cmd_sr_dataset(args: argparse.Namespace) -> int:
    """``sr-dataset``: see :mod:`transmrsr.batch` (resumable, sharded under torchrun / accelerate launch)."""
    from .batch import DatasetOptions, Shard, run_dataset

    if args.phi is not None and not 0.0 <= args.phi <= 1.0:
        raise ValueError(f"--phi must lie in [0, 1], got {args.phi}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    check_device(args.device)
    check_output_folder(args.out_deriv)
    opts = DatasetOptions(
        suffix=args.suffix,
        model=args.model,
        revision=args.revision,
        phi=args.phi,
        fusion=args.fusion,
        device=args.device,
        batch_size=args.batch_size,
        quiet=args.quiet,
    )
    shard = Shard.from_env()
    rows = run_dataset(args.bids_root, args.out_deriv, opts, shard=shard)
    # failed volumes: status 2 from one process; under torchrun / accelerate every process ends 0 (a
    # non-zero status makes the launcher print its own traceback): failures are in the summary TSV
    return 2 if shard.world == 1 and any(r.status == "failed" for r in rows) else 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .data.io import check_scale, read_header
    from .inference import simulate_file

    check_scale(args.scale, args.hr)
    read_header(args.hr)  # input problems are reported first, before any data is read
    check_output_file(args.lr, [args.hr])
    lr = simulate_file(args.hr, args.lr, args.scale, args.axis, args.profile)
    if not args.quiet:
        print(f"{args.lr}: {lr.shape} voxels, axis {args.axis} averaged x{args.scale} ({args.profile} profile)")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from .data.degradation import simulate_thick
    from .data.io import VolumeError, check_scale, load_volume
    from .evaluation import evaluate, format_table

    check_scale(args.scale, args.hr)
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
    if args.protocol == "authors":  # the authors' 8-bit, 256²-canvas protocol (no mask, no Dice)
        from .evaluation import evaluate_authors

        if args.dice or args.mask:
            raise VolumeError(
                "--protocol authors scores whole 256² canvases: --mask and --dice apply to --protocol ours"
            )
        rows = evaluate_authors(sr.data, hr.data, lr_data, axis, factor, slice_axis=args.slice_axis)
    else:
        rows = evaluate(
            sr.data, hr.data, lr_data, axis, factor, mask=mask, with_dice=args.dice, slice_axis=args.slice_axis
        )
    if args.json:
        print(
            json.dumps(
                {"axis": axis, "scale": factor, "protocol": args.protocol, "rows": [r.as_dict() for r in rows]},
                indent=2,
            )
        )
    else:
        print(format_table(rows))
    return 0


def _cmd_train_gan(args: argparse.Namespace) -> int:
    from .config import GANTrainConfig
    from .options import from_args
    from .training import train_gan

    check_output_folder(args.out)
    train_gan(from_args(GANTrainConfig, args))
    _say_how_to_resume(args)
    return 0


def _say_how_to_resume(args: argparse.Namespace) -> None:
    """After a run that SIGINT / SIGTERM stopped (it saved its state; the last record of its log
    says ``stopped``): the flag that continues it, once (from the main process of a launcher)."""
    from .training.common import LOG_NAME

    if os.environ.get("RANK", "0") != "0":
        return
    try:
        stopped = json.loads((Path(args.out) / LOG_NAME).read_text().splitlines()[-1]).get("event") == "stopped"
    except (OSError, ValueError, IndexError, AttributeError):
        return
    if stopped:
        print(f"transmrsr {args.command}: to continue the run, give the same command with --resume")


def _cmd_fit_centroids(args: argparse.Namespace) -> int:
    from .training import fit_generator_centroids

    c = fit_generator_centroids(args.gan, args.num_samples, args.clusters, seed=args.seed)
    print(f"{args.gan}: {c.shape[0]} centroids fitted from {args.num_samples} latents and stored with the generator")
    return 0


def _cmd_train_sr(args: argparse.Namespace) -> int:
    from .config import SRTrainConfig
    from .data.io import check_scale
    from .options import from_args
    from .training import train_sr

    check_scale(args.scale, args.data)
    check_output_folder(args.out)
    if not args.perceptual:
        print(
            "train-sr: perceptual terms off (--no-perceptual): the loss is L1 only; recorded in log.jsonl and the model card"
        )
    train_sr(from_args(SRTrainConfig, args))
    _say_how_to_resume(args)
    return 0


def _cmd_prepare_ixi(args: argparse.Namespace) -> int:
    from .data.ixi import prepare_ixi

    check_output_folder(args.out)
    register = None if not args.no_register else False
    files = prepare_ixi(args.tarballs, args.out, register=register, limit=args.limit, progress=print)
    print(f"{args.out}: {len(files)} volume(s) written on the 182x218x181 1 mm MNI grid")
    return 0


def _cmd_prepare_packaged(args: argparse.Namespace) -> int:
    from .data.packaged import prepare_packaged

    check_output_folder(args.out)
    manifest = prepare_packaged(args.out, cache=args.cache, test=args.test)
    n_train = sum(v["role"] == "train" for v in manifest["volumes"])
    print(
        f"{args.out}: {n_train} training volume(s) in train/, held-out {manifest['test']} in test/ (sources.json lists licences)"
    )
    return 0


def _cmd_prepare_public(args: argparse.Namespace) -> int:
    from .data.public import PUBLIC_SOURCES, prepare_public

    if args.list:
        for s in PUBLIC_SOURCES:
            print(
                f"{s.id:13s} {s.role:5s} {s.contrast:5s} {'skull' if s.skull else 'brain'}  {s.origin}  ({s.licence})"
            )
        return 0
    if not args.src_dir or not args.out:
        raise ValueError("give SRC_DIR and --out (or --list)")
    check_output_folder(args.out)
    manifest = prepare_public(args.src_dir, args.out, packaged=args.packaged, cache=args.cache)
    split = manifest["split"]
    print(
        f"{args.out}: train {len(split['train'])}, val {len(split['val'])} ({', '.join(split['val'])}), "
        f"extra {len(split['extra'])}"
        + (f", test {', '.join(split['test'])}" if split.get("test") else "")
        + " (sources.json lists origins and licences)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transmrsr", description="TransMRSR brain MRI super-resolution")
    parser.add_argument("--version", action="version", version=f"transmrsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    sr = sub.add_parser("sr", help="super-resolve a thick-slice NIfTI volume")
    sr.add_argument("input", help="thick-slice .nii / .nii.gz, or a DICOM series (folder, .zip or file)")
    sr.add_argument("output", help="output .nii / .nii.gz (written atomically)")
    sr.add_argument("--model", help="weights folder or Hub repo id (default: bundled weights for the scale)")
    sr.add_argument("--revision", help="Hub revision for --model")
    sr.add_argument("--phi", type=float, help="truncation level in [0, 1] (default: the model's)")
    sr.add_argument("--scale", type=float, help="slice-thickness factor, e.g. 4 or 3.3 (default: from the voxel sizes)")
    sr.add_argument("--axis", type=int, help="thick voxel axis 0, 1 or 2 (default: from the voxel sizes)")
    sr.add_argument(
        "--fusion",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average the SR of both planes that contain the thick axis (default: on; --no-fusion runs one plane, "
        "about half the time and 0.25-0.4 dB lower brain PSNR on the bundled weights)",
    )
    sr.add_argument("--device", help="torch device, e.g. cpu or cuda (default: CUDA when available)")
    sr.add_argument("--batch-size", type=int, default=8, help="slices per forward pass (default 8)")
    sr.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    sr.add_argument(
        "--adapt",
        action="store_true",
        help="fine-tune a copy of the model on this scan's own in-plane slices first (the weights are not changed)",
    )
    sr.add_argument("--adapt-steps", type=int, default=150, help="adaptation steps (default 150, at most 240 s)")
    sr.add_argument("--seed", type=int, default=0, help="seed of the adaptation (same seed, same result)")
    sr.add_argument(
        "--series",
        help="DICOM input holding several series: the one to use (series number or description)",
    )
    sr.add_argument("--dicom-out", help="DICOM input: also write the SR as a derived DICOM series into this new folder")
    sr.add_argument(
        "--consistency",
        metavar="PATH",
        help="also write |degrade(SR) - input| (the scan's own acquisition model applied to the SR) on the SR grid to "
        "PATH and on the input grid to PATH with '_lrgrid' before the extension; prints a summary (docs/trust.md)",
    )
    sr.add_argument(
        "--uncertainty",
        metavar="PATH",
        help="also write a per-voxel uncertainty map on the SR grid (spread of runs that should agree; docs/trust.md)",
    )
    sr.add_argument(
        "--uncertainty-method",
        default=None,
        metavar="M",
        help="runs behind --uncertainty: planes (free with fusion), flips (+1 run), phi (+2 runs), planes+flips "
        "(+1 run; the default)",
    )
    sr.add_argument(
        "--uncertainty-weighting",
        default=None,
        metavar="W",
        help="how the runs' spread becomes the map: geometry (the default: weighted by the SR's through-plane contrast "
        "and the distance from the acquired slice centres) or none (the spread itself)",
    )
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
    ev.add_argument(
        "--protocol",
        default="ours",
        choices=["ours", "authors"],
        help="ours: float volumes, data range of the HR, whole volume, brain mask and per slice (default); "
        "authors: the authors' code's protocol behind the paper's tables (8-bit slices on a zero-padded 256² "
        "canvas, PSNR peak 255, their SSIM)",
    )
    ev.add_argument(
        "--slice-axis",
        type=int,
        choices=[0, 1, 2],
        default=None,
        help="voxel axis the per-slice metrics slice along (default: the last axis other than the thick one)",
    )
    ev.set_defaults(func=_cmd_evaluate)

    # the training flags, their defaults, choices and help come from the config dataclasses (transmrsr.options)
    from .config import GANTrainConfig, SRTrainConfig
    from .options import add_arguments

    gan = sub.add_parser("train-gan", help="stage 1: train the StyleSwin generative prior on HR slices")
    add_arguments(gan, GANTrainConfig, required=("data", "out"))
    gan.set_defaults(func=_cmd_train_gan)

    cen = sub.add_parser("fit-centroids", help="fit the truncation centroids of a stage-1 generator")
    cen.add_argument("--gan", required=True, help="stage-1 output folder")
    cen.add_argument("--num-samples", type=int, default=60000, help="latents sampled from the mapping network")
    cen.add_argument("--clusters", type=int, default=None, help="k-means clusters (default: the model's, 8)")
    cen.add_argument("--seed", type=int, default=0)
    cen.set_defaults(func=_cmd_fit_centroids)

    tsr = sub.add_parser("train-sr", help="stage 2: fine-tune TransMRSR for super-resolution")
    add_arguments(tsr, SRTrainConfig, required=("data", "out", "scale"))
    tsr.set_defaults(func=_cmd_train_sr)

    ixi = sub.add_parser("prepare-ixi", help="IXI T1/T2 tarballs -> 1 mm 182x218x181 MNI-grid volumes")
    ixi.add_argument("tarballs", nargs="+", help="IXI-T1.tar and/or IXI-T2.tar")
    ixi.add_argument("--out", required=True, help="output folder (T1/ and T2/ inside)")
    ixi.add_argument("--no-register", action="store_true", help="do not use antspyx even if installed")
    ixi.add_argument("--limit", type=int, help="at most this many volumes per tarball")
    ixi.set_defaults(func=_cmd_prepare_ixi)

    pkg = sub.add_parser(
        "prepare-packaged", help="real 1 mm T1s shipped in pip packages -> train/ and a held-out test/"
    )
    pkg.add_argument("--out", required=True, help="output folder (train/, test/, masks/, sources.json)")
    pkg.add_argument("--cache", help="where downloaded packages are kept (default: OUT/cache)")
    pkg.add_argument("--test", default="icbm152-2009a", help="held-out subject (default icbm152-2009a)")
    pkg.set_defaults(func=_cmd_prepare_packaged)

    pub = sub.add_parser("prepare-public", help="the allow-listed public heads -> train/, val/, extra/ (fixed split)")
    pub.add_argument("src_dir", nargs="?", help="folder holding the downloaded public volumes (<id>.nii.gz / .mgz)")
    pub.add_argument("--out", help="output folder (train/, val/, extra/, masks/, sources.json)")
    pub.add_argument(
        "--packaged", action="store_true", help="also prepare-packaged into OUT (S1, MNI152 to train; ICBM152 test)"
    )
    pub.add_argument("--cache", help="with --packaged: where downloaded packages are kept (default: OUT/cache)")
    pub.add_argument("--list", action="store_true", help="list the allow-listed volumes, their role and licence")
    pub.set_defaults(func=_cmd_prepare_public)

    ds = sub.add_parser(
        "sr-dataset",
        help="super-resolve every anatomical scan of a BIDS dataset into BIDS derivatives (desc-transmrsr)",
    )
    ds.add_argument("bids_root", help="BIDS dataset root (holds dataset_description.json)")
    ds.add_argument("out_deriv", help="derivatives folder, e.g. BIDS_ROOT/derivatives/transmrsr")
    ds.add_argument("--suffix", default="T1w", help="BIDS suffix of the scans to super-resolve (default T1w)")
    ds.add_argument("--model", help="weights folder or Hub repo id (default: bundled weights for each factor)")
    ds.add_argument("--revision", help="Hub revision for --model")
    ds.add_argument("--phi", type=float, help="truncation level in [0, 1] (default: the model's)")
    ds.add_argument("--fusion", action=argparse.BooleanOptionalAction, default=None, help="as for sr (default: on)")
    ds.add_argument("--device", help="torch device (default: one GPU per process when there are GPUs, else cpu)")
    ds.add_argument("--batch-size", type=int, default=8, help="slices per forward pass (default 8)")
    ds.add_argument("--quiet", action="store_true", help="only errors and nothing else")
    ds.set_defaults(func=_cmd_sr_dataset)

    info = sub.add_parser("info", help="show the sizes and switches of a preset or a saved model")
    src = info.add_mutually_exclusive_group()
    src.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    src.add_argument("--model", help="weights folder or Hugging Face Hub repo id")
    info.add_argument("--revision", help="Hub revision (branch, tag or commit) for --model")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_cmd_info)
    return parser


def flag_names(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """``command``'s flags by the parameter they set (``dest``), e.g. ``{"axis": "--axis"}`` for ``sr``
    and ``{"thick_axis": "--axis", "perceptual": "--no-perceptual"}`` for ``train-sr``."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {
        a.dest: next(o for o in a.option_strings if o.startswith("--"))
        for a in sub._actions
        if any(o.startswith("--") for o in a.option_strings) and a.dest != "help"
    }


def error_text(exc: BaseException, flags: dict[str, str]) -> str:
    """The one line the CLI shows for a library error: a parameter the library names in neutral words
    (:mod:`transmrsr.errors`) becomes the flag that sets it (``flags``, else ``--`` and its name)."""
    from .errors import NamesParameters

    text = (
        exc.worded(lambda p: flags.get(p, "--" + p.replace("_", "-"))) if isinstance(exc, NamesParameters) else str(exc)
    )
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError
    from .data.io import VolumeError
    from .hub import PretrainedLoadError
    from .losses import PerceptualWeightsError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (PretrainedLoadError, ConfigError, VolumeError, ValueError, FileExistsError, PerceptualWeightsError) as exc:
        text = error_text(exc, flag_names(parser, args.command))
        print(f"transmrsr {args.command}: error: {text}", file=sys.stderr)
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
