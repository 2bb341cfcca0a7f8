"""A figure of a stage-1 prior's sample grids at several steps of its run (the model card's sample grid).

Usage::

    python benchmarks/prior_samples.py RUN --steps 500 2000 4000 --out docs/prior-samples.png

``RUN`` is a ``transmrsr train-gan`` output folder: its ``samples/stepNNNNNNN.png`` grids (written every
``--sample-every`` steps from fixed latents by the EMA generator) are placed side by side, each titled
with its step, so the figure shows what the prior learned over the run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image


def sample_grid(run: Path, step: int) -> np.ndarray:
    """The grid image ``(H, W)`` (or ``(H, W, 3)``) a stage-1 run saved at ``step``."""
    path = run / "samples" / f"step{step:07d}.png"
    if not path.is_file():
        have = sorted(p.stem.removeprefix("step").lstrip("0") or "0" for p in (run / "samples").glob("step*.png"))
        raise SystemExit(f"{path}: no sample grid at step {step}; this run has steps {', '.join(have) or 'none'}")
    return np.asarray(Image.open(path))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a train-gan output folder (with samples/)")
    p.add_argument("--steps", type=int, nargs="+", required=True)
    p.add_argument("--out", required=True, help="the PNG to write")
    args = p.parse_args(argv)
    run = Path(args.run)
    grids = [sample_grid(run, s) for s in args.steps]
    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 3.5), squeeze=False)
    for ax, grid, step in zip(axes[0], grids, args.steps):
        ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"step {step}")
        ax.axis("off")
    fig.suptitle(f"stage-1 prior samples (fixed latents, EMA generator): {run.name}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
