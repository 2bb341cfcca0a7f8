"""benchmarks/default_weights.py on a tiny stand-in for the bundled weights: the held-out subject,
the fused default and the one-plane run scored beside cubic, the model card's block rewritten."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_default_weights_scores_fused_and_one_plane_and_updates_the_card(tiny_dir, tmp_path):
    from transmrsr import TransMRSR
    from transmrsr.data import simulate_thick
    from transmrsr.data.packaged import held_out_t1
    from transmrsr.evaluation.metrics import psnr
    from transmrsr.inference import super_resolve

    folder = tmp_path / "checkpoints" / "transmrsr-small-t1-x8"
    shutil.copytree(tiny_dir, folder)
    card = folder / "README.md"
    card.write_text("# card\n\nbefore\n<!-- metrics:start -->\nold figures\n<!-- metrics:end -->\nafter\n")
    out_json = tmp_path / "res.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "default_weights.py"),
            "--checkpoints",
            str(tmp_path / "checkpoints"),
            "--scales",
            "8",
            "--threads",
            "1",
            "--json",
            str(out_json),
            "--update-cards",
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out_json.read_text())["results"][0]
    methods = [r["method"] for r in res["rows"]]
    assert methods == ["TransMRSR (fused)", "TransMRSR (one plane)", "cubic", "trilinear"]
    assert res["default"]["method"] == "TransMRSR (fused)" and res["default"]["seconds"] > 0
    assert res["default"]["slices_run"] > res["other"]["slices_run"] > 0  # fusion runs a second plane

    # the figures are those of the volumes themselves: recompute the fused brain PSNR and cubic's here
    hr, _, mask = held_out_t1()
    lr = simulate_thick(hr, 2, 8, "box")
    model = TransMRSR.from_pretrained(folder).eval()
    sr = super_resolve(model, lr, 2, 8, n_thin=hr.shape[2], fusion=True, show_progress=False)
    by = {r["method"]: r for r in res["rows"]}
    assert by["TransMRSR (fused)"]["psnr_mask"] == pytest.approx(psnr(sr.sr, hr, mask), abs=2e-3)
    assert by["cubic"]["psnr_mask"] == pytest.approx(psnr(sr.interpolated, hr, mask), abs=2e-3)
    assert np.isfinite([r["ssim_mask"] for r in res["rows"]]).all()

    text = card.read_text()
    assert text.startswith("# card\n\nbefore\n") and text.endswith("after\n") and "old figures" not in text
    block = text.split("<!-- metrics:start -->")[1].split("<!-- metrics:end -->")[0]
    assert "| TransMRSR (fused) |" in block and "| TransMRSR (one plane) |" in block and "| cubic |" in block
    gain = by["TransMRSR (fused)"]["psnr_mask"] - by["cubic"]["psnr_mask"]
    assert f"TransMRSR (fused) (the default): SR − cubic = {gain:+.2f} dB PSNR" in block
