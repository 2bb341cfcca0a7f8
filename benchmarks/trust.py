"""Measure the trust layer (issue #18) on the validation subjects of ``transmrsr prepare-public``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/trust.py DATA [--scales 4 8] [--subjects val] [--threads 1] \
        [--crop N] [--json out.json]

For each bundled model (``checkpoints/transmrsr-small-t1-x<R>``) and each subject of ``DATA/val/``
(never the test subject: the uncertainty method and smoothing are chosen here), thick slices are
simulated along the axial axis (box profile, as ``benchmarks/validation.py``), and the scan is
super-resolved as ``transmrsr sr`` does (fused planes, the model's φ). Then:

* **uncertainty** — for each method of :data:`transmrsr.trust.UNCERTAINTY_METHODS`, with and
  without smoothing, and with the geometry weighting ``transmrsr sr`` applies by default
  (:func:`transmrsr.trust.geometry_weighted`): Spearman correlation between the map and ``|SR - HR|`` inside the
  subject's mask (brain mask, else head mask), the mean error in the 5 % most uncertain voxels
  over the mean error in the rest, and the extra SR runs' wall time. Two references that are
  not runs: ``|SR - cubic|`` (what the network changed) and the spread consistency residual.
* **consistency** — the relative residual (:class:`transmrsr.trust.ConsistencySummary`) of the
  SR, of cubic interpolation, of the HR itself (0 by construction: the check that the model of
  the acquisition is the simulation's), of the HR when the scan had a Gaussian slice profile but
  a box is assumed (what a profile mismatch costs), and of the SR with a made-up 5-voxel-radius
  blob (+30 % of the range) and with the same blob balanced within each slab (+/-30 % on
  alternating thin slices: invisible to consistency by design).

Prints markdown tables (and ``--json``). ``--crop N`` keeps the central ``N`` voxels of each
in-plane axis (faster; say so when quoting).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from scipy import ndimage
from scipy.stats import spearmanr

from benchmarks.provenance import header_line
from transmrsr import TransMRSR
from transmrsr.data.degradation import SliceProfile, simulate_acquisition, simulate_thick
from transmrsr.data.io import load_mask, load_volume
from transmrsr.data.normalization import IntensityScaler
from transmrsr.inference import super_resolve_acquisition
from transmrsr.trust import (
    DEFAULT_SMOOTHING,
    DEFAULT_UNCERTAINTY,
    UNCERTAINTY_METHODS,
    consistency_map,
    geometry_weighted,
    simple_acquisition,
    uncertainty_map,
    uncertainty_runs,
)

REPO = Path(__file__).resolve().parents[1]
AXIS = 2  # axial in RAS: prepared volumes are RAS
TOP = 0.05


def subjects(data: Path, roles: list[str]) -> list[tuple[str, Path, Path]]:
    """``(name, volume, mask)`` of the subjects of ``roles`` (brain mask, else head mask)."""
    manifest = json.loads((data / "sources.json").read_text())
    out = []
    for v in manifest["volumes"]:
        if v.get("role") in roles and v.get("role") != "test":
            mask = v.get("brain_mask") or v.get("head_mask")
            out.append((v["name"], data / v["file"], data / mask))
    return sorted(out)


def predictor_scores(u: np.ndarray, err: np.ndarray, mask: np.ndarray) -> tuple[float, float, float, float]:
    """``(spearman, top-5 % mean error, rest mean error, ratio)`` of map ``u`` against ``err`` in ``mask``."""
    uu, ee = u[mask].astype(np.float64), err[mask].astype(np.float64)
    rho = float(spearmanr(uu, ee).statistic)
    cut = np.quantile(uu, 1.0 - TOP)
    top = uu >= cut
    t, r = float(ee[top].mean()), float(ee[~top].mean())
    return rho, t, r, t / r


def blob(shape: tuple[int, ...], mask: np.ndarray, radius: float = 5.0) -> np.ndarray:
    """A ball of ``radius`` voxels at the mask's centre of mass (bool)."""
    c = np.array(ndimage.center_of_mass(mask))
    grid = np.indices(shape, sparse=True)
    return sum((g - ci) ** 2 for g, ci in zip(grid, c)) <= radius**2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="prepare-public output folder")
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--subjects", nargs="+", default=["val"], help="roles (default val; test is never used)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--crop", type=int, help="keep the central N voxels of each in-plane axis")
    ap.add_argument("--json")
    ap.add_argument(
        "--figure", help="PNG of one coronal slice of the first subject at the first scale (docs/trust.png)"
    )
    ap.add_argument("--figure-only", action="store_true", help="make the figure and stop (no tables)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    subs = subjects(Path(args.data), args.subjects)
    extra = (
        f"axial thick slices simulated (box); fused SR at the model's φ; subjects {', '.join(s[0] for s in subs)}"
        f"{'' if not args.crop else f'; central {args.crop} voxels in-plane'}"
    )
    print(header_line(args.threads, extra=extra) + "\n", flush=True)
    unc_rows, con_rows = [], []
    for r in args.scales:
        model = TransMRSR.from_pretrained(REPO / "checkpoints" / f"transmrsr-small-t1-x{r}").eval()
        for name, vpath, mpath in subs:
            hr = load_volume(vpath).data
            mask = load_mask(mpath).astype(bool)
            if args.crop:
                sl = tuple(
                    slice(max(0, (n - args.crop) // 2), max(0, (n - args.crop) // 2) + args.crop) for n in hr.shape[:2]
                )
                hr, mask = hr[sl], mask[sl]
            lr = simulate_thick(hr, AXIS, r, "box")
            acq = simple_acquisition(AXIS, r, n_thin=hr.shape[AXIS])
            kw = dict(served=(r,), fusion=True, keep_planes=True, show_progress=False)
            t0 = time.perf_counter()
            base = super_resolve_acquisition(lambda m, model=model: model, lr, acq, **kw)
            t_base = time.perf_counter() - t0
            cache: dict[tuple, tuple] = {}

            def rerun(vol: np.ndarray, overrides: dict, model=model, lr=lr, acq=acq, kw=kw, cache=cache):
                key = (tuple(sorted(overrides.items())), bool(np.array_equal(vol, lr)))
                if key not in cache:
                    t = time.perf_counter()
                    res = super_resolve_acquisition(lambda m: model, vol, acq, **{**kw, **overrides})
                    cache[key] = (res, time.perf_counter() - t)
                return cache[key][0]

            err = np.abs(base.sr - hr)
            if args.figure and not unc_rows:
                runs, _ = uncertainty_runs(DEFAULT_UNCERTAINTY, base, rerun, lr)
                unc = geometry_weighted(uncertainty_map(runs), base.sr, acq, lr.shape, DEFAULT_SMOOTHING)
                figure(args.figure, hr, lr, base, unc, acq, mask, name, r)
                if args.figure_only:
                    return
            # --- uncertainty
            for method in UNCERTAINTY_METHODS:
                runs, extra = uncertainty_runs(method, base, rerun, lr)
                # the extra time of this method: its own reruns (shared ones timed once, counted for each)
                extra_s = sum(cache[k][1] for k in cache if k in _method_keys(method))
                maps = [(method, smooth, uncertainty_map(runs, smooth)) for smooth in (0.0, DEFAULT_SMOOTHING, 2.0)]
                # the weighting transmrsr sr applies by default, at the default smoothing
                spread = uncertainty_map(runs, DEFAULT_SMOOTHING)
                weighted = geometry_weighted(spread, base.sr, acq, lr.shape, DEFAULT_SMOOTHING)
                maps.append((f"{method} + geometry weighting", DEFAULT_SMOOTHING, weighted))
                for label, smooth, u in maps:
                    rho, top, rest, ratio = predictor_scores(u, err, mask)
                    unc_rows.append(
                        dict(
                            scale=r,
                            subject=name,
                            method=label,
                            smoothing=smooth,
                            spearman=rho,
                            top_err=top,
                            rest_err=rest,
                            ratio=ratio,
                            extra_runs=extra,
                            extra_s=extra_s,
                            base_s=t_base,
                        )
                    )
            lr_map, sr_map, _ = consistency_map(base.sr, lr, acq)
            for label, u in (
                ("|SR − cubic| (reference)", np.abs(base.sr - base.cubic)),
                ("consistency residual on the SR grid (reference)", sr_map),
            ):
                for smooth in (0.0, DEFAULT_SMOOTHING):
                    uu = ndimage.gaussian_filter(u, smooth) if smooth else u
                    rho, top, rest, ratio = predictor_scores(uu, err, mask)
                    unc_rows.append(
                        dict(
                            scale=r,
                            subject=name,
                            method=label,
                            smoothing=smooth,
                            spearman=rho,
                            top_err=top,
                            rest_err=rest,
                            ratio=ratio,
                            extra_runs=0,
                            extra_s=0.0,
                            base_s=t_base,
                        )
                    )
            # --- consistency
            span = IntensityScaler.fit(lr).high - IntensityScaler.fit(lr).low
            ball = blob(hr.shape, mask)
            lump = base.sr + 0.3 * span * ball
            stripes = np.where(np.arange(hr.shape[AXIS]) % 2 == 0, 1.0, -1.0)[None, None, :]
            balanced = base.sr + 0.3 * span * ball * stripes
            lr_gauss = simulate_acquisition(hr, AXIS, SliceProfile(spacing=r, kind="gaussian"))
            cases = [
                ("HR itself", hr, lr),
                ("HR, scan had a Gaussian profile, box assumed", hr, lr_gauss),
                ("cubic interpolation", base.cubic, lr),
                ("TransMRSR SR", base.sr, lr),
                ("SR + invented blob (r = 5 vox, +30 %)", lump, lr),
                ("SR + slab-balanced blob (±30 % on alternate slices)", balanced, lr),
            ]
            ball_lr = simulate_thick(ball.astype(np.float32), AXIS, r) > 0
            for label, vol, scan in cases:
                m_lr, _, s = consistency_map(vol, scan, acq)
                con_rows.append(
                    dict(
                        scale=r,
                        subject=name,
                        case=label,
                        relative=s.relative,
                        p95=s.p95_relative,
                        blob_region=float(m_lr[ball_lr].mean() / span),
                    )
                )
            print(
                f"done x{r} {name}: base {t_base:.0f} s, reruns "
                + ", ".join(f"{k}: {v[1]:.0f} s" for k, v in cache.items()),
                flush=True,
            )
    _print(unc_rows, con_rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"uncertainty": unc_rows, "consistency": con_rows}, indent=2) + "\n")


def figure(
    path: str, hr: np.ndarray, lr: np.ndarray, base, unc: np.ndarray, acq, mask: np.ndarray, name: str, r: int
) -> None:
    """One coronal slice (it holds the thick axis): cubic, SR, HR, |SR - HR|, the uncertainty, the
    consistency residual of the SR and of the SR with an invented blob (on the SR grid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    span = IntensityScaler.fit(lr).high - IntensityScaler.fit(lr).low
    ball = blob(hr.shape, mask)
    _, cons, s = consistency_map(base.sr, lr, acq)
    _, cons_blob, _ = consistency_map(base.sr + 0.3 * span * ball, lr, acq)
    y = int(round(ndimage.center_of_mass(ball)[1]))
    cut = lambda v: np.rot90(v[:, y, :])  # noqa: E731  (x, z) -> superior up
    lo, hi = np.percentile(hr[mask], [0.5, 99.5])
    err = np.abs(base.sr - hr)
    emax = float(np.percentile(err[mask], 99))
    panels = [
        ("cubic (input)", base.cubic, "gray", (lo, hi)),
        ("TransMRSR SR", base.sr, "gray", (lo, hi)),
        ("HR (reference)", hr, "gray", (lo, hi)),
        ("|SR − HR|", err, "inferno", (0, emax)),
        (
            f"uncertainty ({DEFAULT_UNCERTAINTY},\ngeometry weighting)",
            unc,
            "inferno",
            (0, float(np.percentile(unc[mask], 99))),
        ),
        (f"consistency |degrade(SR) − LR|\n{100 * s.relative:.2f} % of range", cons, "inferno", (0, emax)),
        ("consistency, SR + invented blob", cons_blob, "inferno", (0, emax)),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * len(panels), 3.0), dpi=110)
    for ax, (title, vol, cmap, (vmin, vmax)) in zip(axes, panels):
        ax.imshow(cut(vol), cmap=cmap, vmin=vmin, vmax=vmax, aspect="equal", interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(
        f"validation subject {name}, ×{r} axial thick slices (simulated, box), coronal slice y={y}; "
        "maps in input intensity units",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.9))  # room for the suptitle above two-line panel titles
    fig.savefig(path)
    plt.close(fig)


def _method_keys(method: str) -> set[tuple]:
    """The cached reruns a method uses (keys of the benchmark's cache)."""
    if method == "phi":
        return {((("phi", 0.0),), True), ((("phi", 1.0),), True)}
    if method in ("flips", "planes+flips"):
        return {((), False)}
    return set()


def _print(unc_rows: list[dict], con_rows: list[dict]) -> None:
    print("\n## Uncertainty vs |SR − HR| inside the mask\n")
    print(
        "| scale | subject | method | smoothing (vox) | Spearman | err top 5 % | err rest | ratio | extra runs | extra s | SR s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for x in unc_rows:
        print(
            f"| ×{x['scale']} | {x['subject']} | {x['method']} | {x['smoothing']:g} | {x['spearman']:.3f} | "
            f"{x['top_err']:.1f} | {x['rest_err']:.1f} | {x['ratio']:.2f} | {x['extra_runs']} | {x['extra_s']:.0f} | "
            f"{x['base_s']:.0f} |"
        )
    print("\n## Consistency residual, mean |degrade(V) − LR| in the LR foreground (% of the intensity range)\n")
    print("| scale | subject | volume V | mean % | 95th pct % | mean % in the blob's slabs |")
    print("|---|---|---|---|---|---|")
    for x in con_rows:
        print(
            f"| ×{x['scale']} | {x['subject']} | {x['case']} | {100 * x['relative']:.2f} | {100 * x['p95']:.2f} | "
            f"{100 * x['blob_region']:.2f} |"
        )


if __name__ == "__main__":
    main()
