"""Quality against baselines and the ablations, on the held-out subject.

Usage::

    python benchmarks/quality.py --data DATA --runs RUNS [--gan GAN] [--scales 4 8] [--preset small]
        [--img-size 64] [--batch-size 6] [--steps 2000] [--lr 1e-4] [--no-perceptual] [--val-fraction 0.2]
        [--models transmrsr=checkpoints/transmrsr-small-t1-x{scale}] [--dice] [--json out.json]
    python benchmarks/quality.py --quick --data DATA --runs RUNS    # tiny preset, a few steps, a crop

For each scale, every network is trained with one recipe: ``transmrsr train-sr`` with the options
given here (``--data``, ``--gan``, ``--preset``, ``--img-size``, ``--batch-size``, ``--lr``, the loss,
``--max-steps`` = ``--steps``), once as TransMRSR, once with ``--arch edsr`` (the EDSR-style CNN
baseline) and once per ablation (``--ablation no-gp|no-sdt|no-mref|no-sc|frozen-gp``): the same data and
the same budget, one flag apart. Runs live in ``RUNS/x<scale>/<name>`` (keep RUNS outside the
repository); a finished run is reused and an unfinished one resumed (``--resume``), so the
benchmark can be stopped and started again, or given a larger ``--steps``. Without ``--gan`` a
stage-1 prior is trained into ``RUNS/gan`` (``--gan-steps``) and its centroids fitted.
``--models NAME=FOLDER`` uses an already trained folder instead (NAME one of edsr, transmrsr,
no-gp, no-sdt, no-mref, no-sc, frozen-gp; ``{scale}`` in FOLDER is replaced by the scale), e.g. the bundled
``checkpoints/transmrsr-small-t1-x{scale}``.

Test subject: the ICBM152 2009a T1 that ships in nilearn on the paper's 182x218x181 grid
(``transmrsr.data.packaged.held_out_t1``; held out of training by ``prepare-packaged``), thick
slices simulated along the axial axis (box profile, as in training). Rows: cubic and trilinear
interpolation, EDSR, TransMRSR at phi = 0.5 and phi = 1, the four ablations of Table 3 and the
frozen GP of Table 4 (at ``--ablation-phi``; no-gp and no-sdt have no SDT, so no phi); columns: PSNR / SSIM inside the brain mask and over the whole volume (HR
data range, ``transmrsr.evaluation``), with ``--dice`` the tissue Dice (dipy HMRF, minutes per
row). Each table is followed by the ablations' PSNR drop against the full model, ordered, beside
the ordering of the paper's Table 3, and frozen GP against the full model beside Table 4. The
ablations are ``SRTrainConfig.ABLATIONS`` (docs/deviations.md says what each one turns off).

``--quick``: ``tiny`` preset, a few steps, a 64x64x48 crop of the held-out volume (at the brain's
edge, see :func:`crop_box`), L1 only, no
validation split; the same table shape (a smoke test of the whole pipeline: its numbers say
nothing about the methods).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.provenance import Timer, command_line, provenance
from transmrsr.cli import main as transmrsr_cli
from transmrsr.config import SRTrainConfig
from transmrsr.data import simulate_thick
from transmrsr.data.datasets import find_volumes
from transmrsr.data.degradation import interpolate_to_thin
from transmrsr.data.packaged import DEFAULT_TEST, held_out_t1
from transmrsr.evaluation.evaluate import MethodScores, score
from transmrsr.inference import default_slice_axis, super_resolve
from transmrsr.models import EDSR, TransMRSR, load_sr_model

REPO = Path(__file__).resolve().parents[1]

AXIS = 2  # thick axis: axial in RAS, as in training (train-sr --axis 2)
TRAINED = ("edsr", "transmrsr", "no-gp", "no-sdt", "no-mref", "no-sc", "frozen-gp")
ABLATIONS = ("no-gp", "no-sdt", "no-mref", "no-sc")  # Table 3
TABLE4 = ("frozen-gp",)
#: the config fields each variant sets (no-gp: also its initialisation; frozen-gp: its training)
SWITCH = SRTrainConfig.ABLATIONS
QUICK = dict(
    preset="tiny", steps=3, batch_size=4, gan_steps=4, centroid_samples=200, crop=(64, 64, 48), val_fraction=0.0
)
RECIPE_NAME = "quality-recipe.json"

#: The paper's Table 3 (ablations on IXI-Test T1, x8; PSNR dB, SSIM, Dice-Avg), as printed in
#: arXiv 2306.06669 §4.5. Its "w/o GP" row has SDT off too, as our ``no-gp``.
PAPER_TABLE3_X8 = {
    "transmrsr": {"psnr": 30.85, "ssim": 0.9451, "dice_avg": 0.9511},
    "no-gp": {"psnr": 30.33, "ssim": 0.9351, "dice_avg": 0.9091},
    "no-sdt": {"psnr": 30.70, "ssim": 0.9431, "dice_avg": 0.9485},
    "no-mref": {"psnr": 14.34, "ssim": 0.4041, "dice_avg": 0.7401},
    "no-sc": {"psnr": 30.36, "ssim": 0.9140, "dice_avg": 0.9471},
}
#: The paper's Table 4 (training strategy of the GP, IXI-Test T1, x8).
PAPER_TABLE4_X8_T1 = {"frozen-gp": {"psnr": 30.84, "ssim": 0.9450}, "transmrsr": {"psnr": 30.85, "ssim": 0.9451}}


# ---------------------------------------------------------------------------- helpers
def read_log(folder: Path) -> list[dict]:
    path = folder / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def trained_steps(folder: Path) -> int | None:
    """The step a run's log ends at (None: no log)."""
    steps = [r["step"] for r in read_log(folder) if isinstance(r.get("step"), int)]
    return max(steps) if steps else None


def is_finished(folder: Path, steps: int) -> bool:
    """A run that reached ``steps`` (or stopped early on validation) and left its weights."""
    log = read_log(folder)
    ends = [r for r in log if r.get("event") in ("done", "early_stop_done", "stopped")]
    if not ends or not (folder / "model.safetensors").is_file():
        return False
    last = ends[-1]
    return last["event"] == "early_stop_done" or (last["event"] == "done" and last.get("step", 0) >= steps)


def note(message: str) -> None:
    """Progress goes to stderr; stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)


def run_cli(argv: list[str]) -> None:
    with contextlib.redirect_stdout(sys.stderr):
        rc = transmrsr_cli([str(a) for a in argv])
    if rc != 0:
        raise SystemExit(f"quality.py: `transmrsr {shlex.join(map(str, argv))}` failed (exit {rc})")


def check_recipe(folder: Path, recipe: list[str]) -> None:
    """A run folder is reused only for the recipe it was started with (budget aside)."""
    marker = folder / RECIPE_NAME
    if marker.is_file():
        old = json.loads(marker.read_text())["recipe"]
        if old != recipe:
            raise SystemExit(
                f"quality.py: {folder} was trained with another recipe ({shlex.join(old)}); "
                "choose another --runs or remove that folder"
            )
    elif (folder / "training_state.pt").exists():
        raise SystemExit(
            f"quality.py: {folder} holds a run this benchmark did not start; pass it with --models or choose another --runs"
        )
    else:
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"recipe": recipe}, indent=2) + "\n")


def ensure_trained(folder: Path, recipe: list[str], steps: int, log=note) -> None:
    """Train ``transmrsr train-sr RECIPE --out FOLDER --max-steps STEPS``, resuming or reusing."""
    check_recipe(folder, recipe)
    if is_finished(folder, steps):
        return
    resume = ["--resume"] if (folder / "training_state.pt").exists() else []
    log(f"  training {folder} ({f'resumed at step {trained_steps(folder)}' if resume else 'new'}, {steps} steps)")
    run_cli(["train-sr", *recipe, "--out", folder, "--max-steps", steps, *resume])


def ensure_gan(folder: Path, args, log=note) -> Path:
    """A stage-1 prior with fitted centroids in ``folder``, trained (or resumed) here if needed."""
    from transmrsr.models import StyleSwinGenerator

    recipe = [
        "--data",
        str(args.train_data),
        "--preset",
        args.preset,
        "--batch-size",
        str(args.batch_size),
        "--seed",
        str(args.seed),
        *(["--img-size", str(args.img_size)] if args.img_size else []),
    ]
    check_recipe(folder, recipe)
    if not is_finished(folder, args.gan_steps):
        resume = ["--resume"] if (folder / "training_state.pt").exists() else []
        log(f"  stage 1: training {folder} ({args.gan_steps} steps)")
        run_cli(["train-gan", *recipe, "--out", folder, "--max-steps", args.gan_steps, "--sample-every", 0, *resume])
    if not StyleSwinGenerator.from_pretrained(folder).truncation.is_fitted:
        run_cli(["fit-centroids", "--gan", folder, "--num-samples", args.centroid_samples, "--seed", args.seed])
    return folder


def crop_box(mask: np.ndarray, shape: tuple[int, int, int]) -> tuple[slice, ...]:
    """A ``shape`` box inside the volume, centred on the brain along axes 1 and 2 and holding the
    brain's edge along axis 0 (a quarter of the box outside it), so that it shows cortex, CSF,
    skull and air, and the brain mask differs from the whole box."""
    idx = np.nonzero(mask)
    box = []
    for a, n in enumerate(shape):
        n = min(n, mask.shape[a])
        lo, hi = int(idx[a].min()), int(idx[a].max()) + 1
        start = lo - n // 4 if a == 0 else (lo + hi) // 2 - n // 2
        start = min(max(start, 0), mask.shape[a] - n)
        box.append(slice(start, start + n))
    return tuple(box)


def held_out_volume(crop: tuple[int, int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """The held-out HR volume and its brain mask (bool), cropped about the brain if asked."""
    hr, _, mask = held_out_t1()
    mask = mask.astype(bool)
    if crop:
        box = crop_box(mask, crop)
        hr, mask = np.ascontiguousarray(hr[box]), mask[box]
    return hr, mask


@dataclass
class Row:
    method: str
    phi: float | None
    source: str
    scores: MethodScores

    def as_dict(self) -> dict:
        return {"method": self.method, "phi": self.phi, "source": self.source, **self.scores.as_dict()}


# ---------------------------------------------------------------------------- evaluation
def evaluate_scale(
    scale: int,
    models: dict[str, tuple],
    hr: np.ndarray,
    mask: np.ndarray,
    args,
    hr_seg: np.ndarray | None = None,
    log=note,
) -> list[Row]:
    """Score interpolation and every model on the held-out volume at ``scale`` (tissue Dice
    against ``hr_seg`` when given)."""
    sa = default_slice_axis(AXIS)
    lr = simulate_thick(hr, AXIS, scale, "box")
    n_thin = hr.shape[AXIS]
    rows = []
    for name, mode in (("cubic", "cubic"), ("trilinear", "linear")):
        interp = interpolate_to_thin(lr, AXIS, scale, n_thin=n_thin, mode=mode)
        rows.append(Row(name, None, "interpolation", score(name, interp, hr, mask, sa, hr_seg)))
    plan = [("EDSR", "edsr", None)] + [("TransMRSR", "transmrsr", phi) for phi in sorted({0.5, 1.0, args.ablation_phi})]
    plan += [(name, name, None if name in ("no-sdt", "no-gp") else args.ablation_phi) for name in ABLATIONS + TABLE4]
    for label, key, phi in plan:
        if key not in models:
            continue
        model, source = models[key]
        with Timer() as timer:
            result = super_resolve(
                model, lr, AXIS, scale, n_thin=n_thin, phi=phi, batch_size=args.eval_batch_size, show_progress=False
            )
        rows.append(Row(label, phi, source, score(label, result.sr, hr, mask, sa, hr_seg)))
        log(f"  x{scale} {label}{'' if phi is None else f' phi={phi}'}: {timer.seconds:.1f} s")
    return rows


def format_rows(rows: list[Row]) -> str:
    cubic = next(r for r in rows if r.method == "cubic").scores
    dice = any(r.scores.dice for r in rows)
    head = "| method | φ | PSNR brain (dB) | SSIM brain | PSNR volume (dB) | SSIM volume | Δ PSNR brain vs cubic |"
    sep = "|---|---|---|---|---|---|---|"
    if dice:
        head += " Dice CSF | Dice GM | Dice WM | Dice mean |"
        sep += "---|---|---|---|"
    head += " model |"
    sep += "---|"
    lines = [head, sep]
    for r in rows:
        s = r.scores
        phi = "–" if r.phi is None else f"{r.phi:g}"
        line = (
            f"| {r.method} | {phi} | {s.psnr_mask:.2f} | {s.ssim_mask:.4f} | {s.psnr:.2f} | {s.ssim:.4f} | "
            f"{s.psnr_mask - cubic.psnr_mask:+.2f} |"
        )
        if dice:
            line += "".join(f" {s.dice.get(k, float('nan')):.4f} |" for k in ("CSF", "GM", "WM", "mean"))
        lines.append(line + f" {r.source} |")
    return "\n".join(lines)


def kendall_tau(order_a: list[str], order_b: list[str]) -> tuple[int, int, float]:
    """Pairs ordered alike in two rankings of the same items: ``(concordant, pairs, tau)``."""
    pos = {k: i for i, k in enumerate(order_b)}
    items = [k for k in order_a if k in pos]
    conc = pairs = 0
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            pairs += 1
            conc += pos[items[i]] < pos[items[j]]
    tau = (2 * conc - pairs) / pairs if pairs else float("nan")
    return conc, pairs, tau


def ablation_summary(rows: list[Row], scale: int, phi: float) -> str:
    """Our ablations' PSNR drop against the full model, ordered, beside the paper's Table 3."""
    full = next((r for r in rows if r.method == "TransMRSR" and r.phi == phi), None)
    abl = {r.method: r for r in rows if r.method in ABLATIONS}
    paper_drop = {
        k: PAPER_TABLE3_X8["transmrsr"]["psnr"] - v["psnr"] for k, v in PAPER_TABLE3_X8.items() if k in ABLATIONS
    }
    paper_order = sorted(paper_drop, key=paper_drop.get, reverse=True)
    paper = ", ".join(f"{k} {-paper_drop[k]:+.2f}" for k in paper_order)
    lines = [
        f"Paper, Table 3 (IXI-Test T1, ×8, PSNR drop vs the full model's {PAPER_TABLE3_X8['transmrsr']['psnr']:.2f} dB): "
        f"{paper} → {' > '.join(paper_order)}."
    ]
    if full is None or not abl:
        lines.insert(
            0, f"Ablations at ×{scale}: not compared (the full model at φ = {phi:g} or the ablations are missing)."
        )
        return "\n".join(lines)
    drop = {k: full.scores.psnr_mask - r.scores.psnr_mask for k, r in abl.items()}
    ours = sorted(drop, key=drop.get, reverse=True)
    ours_text = ", ".join(f"{k} {-drop[k]:+.2f}" for k in ours)
    conc, pairs, tau = kendall_tau(ours, paper_order)
    lines.insert(
        0,
        f"Ours at ×{scale} (PSNR in the brain mask, change vs TransMRSR at φ = {phi:g}, largest drop first): "
        f"{ours_text} → {' > '.join(ours)}.",
    )
    same = "the same ordering" if conc == pairs and len(ours) == len(paper_order) else "a different ordering"
    lines.append(f"Agreement: {conc} of {pairs} pairs ordered as in the paper (Kendall τ = {tau:+.2f}): {same}.")
    frozen = next((r for r in rows if r.method == "frozen-gp"), None)
    if frozen is not None:
        t4 = PAPER_TABLE4_X8_T1
        lines.append(
            f"Frozen GP at ×{scale}: {frozen.scores.psnr_mask - full.scores.psnr_mask:+.2f} dB vs TransMRSR at "
            f"φ = {phi:g} (paper, Table 4, T1 ×8: {t4['frozen-gp']['psnr'] - t4['transmrsr']['psnr']:+.2f} dB)."
        )
    if any(r.source.startswith("given") != full.source.startswith("given") for r in abl.values()):
        lines.append(
            "Caveat: the full model and some ablations come from different places (given with --models vs "
            "trained here), so these drops do not compare like with like."
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8])
    ap.add_argument(
        "--data",
        help="prepared folder from `transmrsr prepare-packaged` (its train/ is used) or a folder of training volumes",
    )
    ap.add_argument("--runs", help="folder for the training runs (outside the repository); reused and resumed")
    ap.add_argument("--gan", help="stage-1 folder with fitted centroids (default: trained into RUNS/gan)")
    ap.add_argument(
        "--models",
        nargs="+",
        default=[],
        metavar="NAME=FOLDER",
        help=f"use trained folders instead of training; NAME in {', '.join(TRAINED)}; {{scale}} is replaced",
    )
    ap.add_argument("--preset", default=None, help="TransMRSR preset (default small; --quick: tiny)")
    ap.add_argument("--img-size", type=int, default=None, help="training canvas (default: the preset's)")
    ap.add_argument("--batch-size", type=int, default=None, help="training batch (default 6; --quick: 4)")
    ap.add_argument(
        "--steps", type=int, default=None, help="training budget in steps per model (default 2000; --quick: 3)"
    )
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lr-step-epochs", type=int, default=None, help="as train-sr (default: its 30)")
    ap.add_argument("--epochs", type=int, default=None, help="as train-sr (default: its 100)")
    ap.add_argument("--val-fraction", type=float, default=None, help="as train-sr (default 0.2; --quick: 0)")
    ap.add_argument("--no-perceptual", action="store_true", help="L1 only (--quick implies it)")
    ap.add_argument("--vgg-weights", help="as train-sr")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint-every", type=int, default=200)
    ap.add_argument(
        "--gan-steps", type=int, default=None, help="stage-1 steps when --gan is not given (default 10000; --quick: 4)"
    )
    ap.add_argument(
        "--centroid-samples", type=int, default=None, help="latents for the centroid fit (default 60000; --quick: 200)"
    )
    ap.add_argument("--ablation-phi", type=float, default=0.5, help="φ at which the ablations are scored (default 0.5)")
    ap.add_argument(
        "--crop",
        type=int,
        nargs=3,
        default=None,
        metavar=("X", "Y", "Z"),
        help="score a box of this size about the brain (default: the whole volume; --quick: 64 64 48)",
    )
    ap.add_argument("--eval-batch-size", type=int, default=8)
    ap.add_argument("--dice", action="store_true", help="also tissue Dice (dipy HMRF; minutes per row)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, i.e. OMP_NUM_THREADS)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--quick", action="store_true", help="tiny preset, a few steps, a crop of the held-out volume")
    args = ap.parse_args(argv)
    defaults = dict(
        preset="small", steps=2000, batch_size=6, gan_steps=10000, centroid_samples=60000, crop=None, val_fraction=0.2
    )
    for key, value in (QUICK if args.quick else defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.no_perceptual = True
    args.given = {}
    for item in args.models:
        name, sep, folder = item.partition("=")
        if not sep or name not in TRAINED or not folder:
            ap.error(f"--models {item!r}: expected NAME=FOLDER with NAME in {', '.join(TRAINED)}")
        args.given[name] = folder
    return args


def recipe_for(args, scale: int, gan: Path | None) -> list[str]:
    """The train-sr options every trained model shares (all but --out, --max-steps and the variant flag)."""
    r = [
        "--data",
        str(args.train_data),
        "--preset",
        args.preset,
        "--scale",
        str(scale),
        "--batch-size",
        str(args.batch_size),
        "--lr",
        repr(args.lr),
        "--val-fraction",
        repr(args.val_fraction),
        "--seed",
        str(args.seed),
        "--checkpoint-every",
        str(args.checkpoint_every),
    ]
    if gan is not None:
        r += ["--gan", str(gan)]
    if args.img_size:
        r += ["--img-size", str(args.img_size)]
    if args.lr_step_epochs is not None:
        r += ["--lr-step-epochs", str(args.lr_step_epochs)]
    if args.epochs is not None:
        r += ["--epochs", str(args.epochs)]
    if args.no_perceptual:
        r += ["--no-perceptual"]
    if args.vgg_weights:
        r += ["--vgg-weights", str(args.vgg_weights)]
    return r


VARIANT = {"edsr": ["--arch", "edsr"], "transmrsr": [], **{a: ["--ablation", a] for a in ABLATIONS + TABLE4}}


def load_checked(name: str, folder: str) -> TransMRSR | EDSR:
    model = load_sr_model(folder)
    want = EDSR if name == "edsr" else TransMRSR
    if not isinstance(model, want):
        raise SystemExit(
            f"quality.py: {folder} holds a {type(model).__name__}, not the {want.__name__} that row {name!r} needs"
        )
    for field, value in SWITCH.get(name, {}).items():
        if getattr(model.config, field) != value:
            raise SystemExit(
                f"quality.py: {folder} has {field}={getattr(model.config, field)}; it is not the {name} ablation"
            )
    if name == "transmrsr" and any(getattr(model.config, f) == v for a in SWITCH.values() for f, v in a.items()):
        raise SystemExit(f"quality.py: {folder} is an ablated TransMRSR, not the full model")
    return model.eval()


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    to_train = [n for n in TRAINED if n not in args.given]
    gan = Path(args.gan) if args.gan else None
    runs = Path(args.runs).resolve() if args.runs else None
    if to_train:
        if not args.data or runs is None:
            raise SystemExit(
                f"quality.py: --data and --runs are needed to train {', '.join(to_train)} (or pass them with --models)"
            )
        if runs.is_relative_to(REPO):
            raise SystemExit(f"quality.py: --runs {runs} lies inside the repository; choose a folder outside it")
        data = Path(args.data)
        args.train_data = data / "train" if (data / "train").is_dir() else data
        leaked = [p.name for p in find_volumes(args.train_data) if DEFAULT_TEST in p.name]
        if leaked:
            raise SystemExit(
                f"quality.py: {args.train_data} holds the held-out test subject ({leaked[0]}); pass the train/ folder"
            )
        if gan is None and any(n != "edsr" for n in to_train):
            gan = ensure_gan(runs / (f"gan-{args.preset}" + (f"-{args.img_size}" if args.img_size else "")), args)
    header_cmd = command_line(__file__, argv)
    loss = "L1" if args.no_perceptual else "1.0 L1 + 0.5 content + 0.5 style (VGG19)"
    hr, mask = held_out_volume(args.crop)
    hr_seg = None
    if args.dice:
        from transmrsr.evaluation.segmentation import segment_tissues

        hr_seg = segment_tissues(hr, mask)
    results = []
    for scale in args.scales:
        models: dict[str, tuple] = {}
        recipe = recipe_for(args, scale, gan) if to_train else []
        for name in TRAINED:
            if name in args.given:
                folder = args.given[name].replace("{scale}", str(scale))
                models[name] = (load_checked(name, folder), f"given: {folder}")
            else:
                folder = runs / f"x{scale}" / name
                ensure_trained(folder, recipe + VARIANT[name], args.steps)
                models[name] = (load_checked(name, str(folder)), f"trained here, {trained_steps(folder)} steps")
        rows = evaluate_scale(scale, models, hr, mask, args, hr_seg)
        budget = (
            f"budget per trained model: {args.steps} steps, batch {args.batch_size}, canvas "
            f"{args.img_size or 'of the preset'}, preset {args.preset}, lr {args.lr:g}, loss {loss}, val-fraction {args.val_fraction:g}; "
            f"recipe `transmrsr train-sr {shlex.join(recipe)} --max-steps {args.steps}` + `--arch edsr` / `--ablation NAME`"
            if to_train
            else "budget: all models given (--models), none trained here"
        )
        test = f"held-out {DEFAULT_TEST} T1 {'x'.join(map(str, hr.shape))}{' (crop)' if args.crop else ''}, thick axis {AXIS} (box) ×{scale}"
        header = f"{provenance()}; {test}; command: `{header_cmd}`; {budget}"
        summary = ablation_summary(rows, scale, args.ablation_phi)
        note = (
            "\n--quick: a few steps on a tiny network; the numbers check the pipeline, not the methods."
            if args.quick
            else ""
        )
        print(f"\n## ×{scale}\n\n# {header}\n\n{format_rows(rows)}\n\n{summary}{note}", flush=True)
        results.append({"scale": scale, "header": header, "rows": [r.as_dict() for r in rows], "ablations": summary})
    if args.json:

        def clean(v):
            return None if isinstance(v, float) and not math.isfinite(v) else v

        payload = [{**res, "rows": [{k: clean(v) for k, v in r.items()} for r in res["rows"]]} for res in results]
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
