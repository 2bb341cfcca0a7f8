"""Real thick-slice acquisitions end to end through ``transmrsr sr``'s library path (issue 17).

Usage::

    python benchmarks/real_acquisitions.py --inputs DIR [--only ID ...] [--no-fusion] [--threads 1]
        [--out WORK] [--figure docs/real-acquisitions.png]

``DIR`` holds one NIfTI per acquisition, named after its id (``ID.nii.gz`` or ``ID.nii``), each with
the dcm2niix / BIDS sidecar ``ID.json`` where there is one (its ``SliceThickness`` is how a gap is
detected). The acquisitions and where they come from are listed in ``tests/data/README.md``
("Real thick-slice acquisitions"): ``t2w2mm``, ``flair3mm``, ``flash5mm_HFS`` / ``_HFP`` / ``_HFDL`` /
``_HFDR``, ``pdfse``, ``vsseg``, ``t1_2mm``.

Each file runs as ``transmrsr sr`` runs it (``_cmd_sr`` in ``transmrsr/cli.py``): geometry from the
header and sidecar (:func:`transmrsr.inference.detect_acquisition`), the bundled x4 / x8 weights
chosen by :func:`transmrsr.inference.plan_serving`, then
:func:`transmrsr.inference.super_resolve_acquisition_file`, which writes the SR NIfTI. Printed: a
table (id, geometry in, factor, gap, served model / strategy, output shape and spacing, time) and a
figure with, for each acquisition, one slice across the thick axis, cubic beside SR. A file the CLI
refuses (e.g. an isotropic one) is listed with the reason. Results are cached per id in ``--out``
(delete the folder, or pass ``--rerun``, to run again). Times are wall seconds on ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.provenance import Timer, header_line

IDS = (
    "t2w2mm",
    "flair3mm",
    "flash5mm_HFS",
    "flash5mm_HFP",
    "flash5mm_HFDL",
    "flash5mm_HFDR",
    "pdfse",
    "vsseg",
    "t1_2mm",
)
CAPTIONS = {
    "t2w2mm": "T2w 1x1x2 mm",
    "flair3mm": "FLAIR 1.3x1.21x3 mm (WMH challenge)",
    "flash5mm_HFS": "T1w 2-D FLASH sag., 4 mm + 0.8 mm gap, head first supine",
    "flash5mm_HFP": "T1w 2-D FLASH sag., 4 mm + 0.8 mm gap, head first prone",
    "flash5mm_HFDL": "T1w 2-D FLASH sag., 4 mm + 0.8 mm gap, decubitus left",
    "flash5mm_HFDR": "T1w 2-D FLASH sag., 4 mm + 0.8 mm gap, decubitus right",
    "pdfse": "PD 2-D FSE 0.86x0.86 mm, 5 mm + 2.07 mm gap (GE)",
    "vsseg": "T1w post-Gd 0.41x0.41x1.5 mm (TCIA)",
    "t1_2mm": "T1w 2 mm isotropic (Siemens XA30)",
}


def find_input(folder: Path, ident: str) -> Path | None:
    for ext in (".nii.gz", ".nii"):
        p = folder / f"{ident}{ext}"
        if p.is_file():
            return p
    return None


def fmt3(v, nd=2) -> str:
    def one(x) -> str:
        t = f"{float(x):.{nd}f}"
        return t.rstrip("0").rstrip(".") if "." in t else t

    return "x".join(one(x) for x in v)


def run_one(path: Path, ident: str, out: Path, fusion: bool) -> dict:
    """One acquisition through the CLI's library path; returns the table row (and writes the SR NIfTI
    and the figure's slices in ``out``)."""
    from transmrsr.cli import BUNDLED_FACTORS, _load_model
    from transmrsr.data.io import VolumeError, load_volume
    from transmrsr.inference import detect_acquisition, plan_serving, super_resolve_acquisition_file
    from transmrsr.studio import contrast_guess

    vol = load_volume(path)
    zooms = tuple(float(z) for z in vol.zooms)
    row = {"id": ident, "shape_in": list(vol.shape), "zooms_in": list(zooms)}
    try:
        acq = detect_acquisition(vol)
    except VolumeError as exc:
        row["refused"] = str(exc).replace(str(path), path.name)
        return row
    hint = contrast_guess(path.name, vol.header)
    plan = plan_serving(acq, BUNDLED_FACTORS)
    model = _load_model(None, plan.model_factor)
    with Timer() as timer:
        res = super_resolve_acquisition_file(
            vol, out / f"{ident}_sr.nii.gz", lambda m: model, served=BUNDLED_FACTORS, fusion=fusion, show_progress=False
        )
    seconds = timer.seconds
    import nibabel as nib

    img = nib.load(out / f"{ident}_sr.nii.gz")
    spacing = np.sqrt((img.affine[:3, :3] ** 2).sum(0))
    a = acq.axis
    gap = acq.zooms[a] - acq.slice_thickness
    row.update(
        axis=a,
        factor=acq.factors[a],
        thickness=acq.slice_thickness,
        gap=gap if gap > 1e-3 else 0.0,
        model=plan.model_factor,
        strategy=plan.strategy,
        shape_out=list(img.shape),
        spacing_out=spacing.tolist(),
        seconds=seconds,
        slices_run=res.slices_run,
        warning=hint,
    )
    # one slice across the thick axis: the middle plane of the first other voxel axis (it holds the
    # thick axis and one in-plane axis)
    others = [i for i in range(3) if i != a]
    fix = others[0]
    k = res.sr.shape[fix] // 2
    sr2 = np.take(res.sr, k, axis=fix)
    cu2 = np.take(res.cubic, k, axis=fix)
    np.savez_compressed(out / f"{ident}_slice.npz", sr=sr2.astype(np.float32), cubic=cu2.astype(np.float32))
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| id | geometry in (mm, voxels) | factor | gap (mm) | served | output (voxels, mm) | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        geo = f"{fmt3(r['zooms_in'])}, {fmt3(r['shape_in'], 0)}"
        if "refused" in r:
            lines.append(f"| {r['id']} | {geo} | — | — | refused: {r['refused'].split(': ', 1)[-1][:90]}... | — | — |")
            continue
        gap = f"{r['gap']:.2f} (thickness {r['thickness']:.2f})" if r["gap"] else "none"
        warn = ", non-T1 warning" if r.get("warning") else ""
        lines.append(
            f"| {r['id']} | {geo} | x{r['factor']:.3f} (axis {r['axis']}) | {gap} | x{r['model']} model, "
            f"{r['strategy']}{warn} | {fmt3(r['shape_out'], 0)}, {fmt3(r['spacing_out'], 3)} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def figure(rows: list[dict], out: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if "refused" not in r and (out / f"{r['id']}_slice.npz").is_file()]
    if not done:
        return
    fig, axes = plt.subplots(len(done), 2, figsize=(8, 3.0 * len(done)), squeeze=False)
    for (ax_c, ax_s), r in zip(axes, done):
        z = np.load(out / f"{r['id']}_slice.npz")
        hi = float(np.percentile(z["cubic"], 99.5)) or 1.0
        for ax, img, name in ((ax_c, z["cubic"], "cubic"), (ax_s, z["sr"], "TransMRSR")):
            ax.imshow(np.rot90(img), cmap="gray", vmin=0, vmax=hi, interpolation="nearest", aspect="equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{r['id']}: {name}", fontsize=9)
    fig.tight_layout(h_pad=2.5, rect=(0, 0.02, 1, 1))
    # one caption line under each row, placed after the layout
    for (ax_c, _), r in zip(axes, done):
        gap = f" (thickness {r['thickness']:.2f} mm: gap found)" if r["gap"] else ""
        fig.text(
            0.5,
            ax_c.get_position().y0 - 0.006,
            f"{CAPTIONS.get(r['id'], r['id'])}: x{r['factor']:.2f}{gap} -> {r['spacing_out'][0]:.2f} mm iso, "
            f"x{r['model']} model{' (non-T1 warning)' if r.get('warning') else ''}",
            ha="center",
            va="top",
            fontsize=7,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=Path, required=True, help="folder with ID.nii[.gz] (+ ID.json sidecars)")
    ap.add_argument("--only", nargs="*", default=None, help="ids to run (default: all found)")
    ap.add_argument("--out", type=Path, default=Path("real_acquisitions_out"), help="SR files and cache")
    ap.add_argument("--figure", type=Path, default=Path("docs/real-acquisitions.png"))
    ap.add_argument("--no-fusion", action="store_true", help="one plane (as sr --no-fusion)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rerun", action="store_true", help="ignore cached results")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    n_cached = 0
    for ident in args.only or IDS:
        path = find_input(args.inputs, ident)
        if path is None:
            continue
        cache = args.out / f"{ident}.json"
        if cache.is_file() and not args.rerun:
            rows.append(json.loads(cache.read_text()))
            n_cached += 1
            continue
        row = run_one(path, ident, args.out, fusion=not args.no_fusion)
        cache.write_text(json.dumps(row))
        rows.append(row)
        print(f"{ident}: done", flush=True)
    cached = f"; {n_cached} row(s) read from the cache in {args.out}" if n_cached else ""
    print(header_line(args.threads, gpu=False, extra=f"{'one plane' if args.no_fusion else 'fused'}{cached}"))
    print(table(rows))
    figure([r for r in rows], args.out, args.figure)
    print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
