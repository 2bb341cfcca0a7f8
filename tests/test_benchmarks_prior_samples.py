"""benchmarks/prior_samples.py: the figure of a stage-1 run's sample grids, from grids written here; a step the
run has no grid for is refused with the steps it has."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.prior_samples import main


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "gan"
    (run / "samples").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for step in (250, 500):
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(run / "samples" / f"step{step:07d}.png")
    return run


def test_figure_of_two_steps(tmp_path):
    run = _run(tmp_path)
    out = tmp_path / "fig.png"
    assert main([str(run), "--steps", "250", "500", "--out", str(out)]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape[1] > img.shape[0] > 100  # two panels side by side
    assert img[..., :3].std() > 10  # the grids are drawn, not a blank page


def test_missing_step_names_the_steps_there_are(tmp_path):
    run = _run(tmp_path)
    with pytest.raises(SystemExit, match="no sample grid at step 300; this run has steps 250, 500"):
        main([str(run), "--steps", "300", "--out", str(tmp_path / "x.png")])
