"""The EDSR baseline (model, weights folder, inference), ``train-sr --arch edsr`` and the
``--quick`` path of benchmarks/quality.py, on small synthetic volumes written here.

Expected values are computed in the tests (torch / the evaluation functions called directly),
never copied from a run. About half a minute on an idle 2-core CPU.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from transmrsr import PretrainedLoadError, TransMRSR, TransMRSRConfig
from transmrsr.cli import main
from transmrsr.data import IntensityScaler, simulate_thick
from transmrsr.evaluation import evaluate
from transmrsr.inference import super_resolve
from transmrsr.models import EDSR, EDSRConfig, load_sr_model

REPO = Path(__file__).resolve().parents[1]
SCALE = 4

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(*args) -> int:
    return main([str(a) for a in args])


def read_log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]


def load_state(folder: Path) -> dict:
    return torch.load(folder / "training_state.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality_benchmark", REPO / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Three synthetic 'heads' (an ellipsoid shell around a textured interior, noise), 2 mm."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    shape = (24, 28, 24)
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    for i in range(3):
        r = np.sqrt(((g / np.array([0.9, 0.95, 0.9 - 0.05 * i])[:, None, None, None]) ** 2).sum(0))
        inner = 80.0 * (1 + 0.5 * np.sin(6 * g[0] + i) * np.cos(5 * g[1] - i))
        vol = np.where(r < 1, 100.0, 0.0) + np.where(r < 0.8, inner, 0.0) + rng.normal(0, 2, shape) * (r < 1)
        nib.save(nib.Nifti1Image(vol.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), str(folder / f"sub{i}.nii.gz"))
    return folder


def edsr_args(data, out, steps, *extra) -> list:
    return [
        "train-sr",
        "--data",
        data,
        "--out",
        out,
        "--arch",
        "edsr",
        "--preset",
        "tiny",
        "--scale",
        SCALE,
        "--batch-size",
        4,
        "--max-steps",
        steps,
        "--no-perceptual",
        "--log-every",
        1,
        "--checkpoint-every",
        100000,
        *extra,
    ]


@pytest.fixture(scope="module")
def edsr_run(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("edsr") / "run"
    assert cli(*edsr_args(data_dir, out, 4)) == 0
    return out


def tiny_edsr(seed: int = 1) -> EDSR:
    torch.manual_seed(seed)
    return EDSR(EDSRConfig.from_preset("tiny")).eval()


# ============================================================================ the model
def test_edsr_shapes_parameters_and_phi():
    model = tiny_edsr()
    cfg = model.config
    assert (cfg.img_size, cfg.channels, cfg.num_blocks, cfg.res_scale) == (32, 8, 2, 0.1)
    c = cfg.channels
    conv = lambda i, o: i * o * 9 + o  # noqa: E731
    assert model.num_parameters() == conv(1, c) + cfg.num_blocks * 2 * conv(c, c) + conv(c, c) + conv(c, 1)
    x = torch.rand(3, 1, 32, 32)
    with torch.inference_mode():
        y = model(x)
        assert y.shape == x.shape and torch.isfinite(y).all()
        assert torch.equal(model(x, phi=0.3), y)  # phi is accepted and ignored
        assert model(torch.rand(2, 1, 24, 40)).shape == (2, 1, 24, 40)  # fully convolutional
        # residual on the input: with a zero tail the network is the identity
        zero = tiny_edsr()
        zero.tail.weight.zero_()
        zero.tail.bias.zero_()
        assert torch.equal(zero(x), x)
    assert (y - x).abs().max() < 0.5  # small initial residual
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(torch.rand(1, 2, 32, 32))
    assert EDSRConfig.from_preset("small").channels == 32 and EDSRConfig.from_preset("small").img_size == 256


def test_edsr_save_and_load_bit_identical(tmp_path):
    model = tiny_edsr()
    folder = model.save_pretrained(tmp_path / "edsr", model_card="# EDSR\n")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "edsr" and config["architecture"] == "EDSR"
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    for loaded in (EDSR.from_pretrained(folder), load_sr_model(folder)):
        assert isinstance(loaded, EDSR) and loaded.config == model.config
        assert set(loaded.state_dict()) == set(model.state_dict())
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
        with torch.inference_mode():
            assert torch.equal(loaded(x), model(x))
    with pytest.raises(PretrainedLoadError, match="holds a EDSR, not a TransMRSR"):
        TransMRSR.from_pretrained(folder)
    # TransMRSR folders still load as TransMRSR, also through the dispatching loader
    torch.manual_seed(0)
    t = TransMRSR(TransMRSRConfig.from_preset("tiny")).save_pretrained(tmp_path / "t")
    assert isinstance(load_sr_model(t), TransMRSR)
    with pytest.raises(PretrainedLoadError, match="holds a TransMRSR, not a EDSR"):
        EDSR.from_pretrained(t)
    bad = json.loads((folder / "config.json").read_text())
    bad["model_type"] = "transmrsr"
    (folder / "config.json").write_text(json.dumps(bad))
    with pytest.raises(PretrainedLoadError, match="model_type is 'transmrsr', expected 'edsr'"):
        EDSR.from_pretrained(folder)


def test_super_resolve_runs_edsr():
    rng = np.random.default_rng(0)
    lr = rng.random((40, 36, 6)).astype(np.float32) * 100  # slices 40 x 24: tiled on the 32 canvas
    model = tiny_edsr()
    res = super_resolve(model, lr, 2, SCALE, show_progress=False)
    assert res.sr.shape == (40, 36, 24) and res.canvas == "tiles" and np.isfinite(res.sr).all()
    assert not np.allclose(res.sr, res.interpolated)
    # a zero residual gives back the interpolated input (the residual-on-interpolation setup)
    with torch.no_grad():
        model.tail.weight.zero_()
        model.tail.bias.zero_()
    res0 = super_resolve(model, lr, 2, SCALE, show_progress=False)
    scaler = IntensityScaler.fit(lr)  # the output is clipped at 0 in the scaled range
    expected = scaler.inverse(np.clip(scaler.forward(res0.interpolated), 0, None))
    np.testing.assert_allclose(res0.sr, expected, rtol=1e-5, atol=1e-3)


# ============================================================================ train-sr --arch edsr
def test_train_sr_arch_edsr(edsr_run, capsys, data_dir, tmp_path):
    model = EDSR.from_pretrained(edsr_run)
    assert model.config.preset == "tiny" and model.config.img_size == 32
    assert isinstance(load_sr_model(edsr_run), EDSR)
    state = load_state(edsr_run)
    assert state["step"] == 4
    for key, value in model.state_dict().items():
        assert torch.equal(state["model"][key], value), key
    log = read_log(edsr_run)
    assert log[0]["event"] == "start" and log[0]["options"]["arch"] == "edsr" and log[0]["prior_loaded"] is False
    assert log[-1]["event"] == "done" and log[-1]["step"] == 4
    assert "EDSR baseline" in (edsr_run / "README.md").read_text()
    # the CLI super-resolves with it
    vol = np.random.default_rng(1).random((20, 24, 5)).astype(np.float32)
    src, dst = tmp_path / "thick.nii.gz", tmp_path / "sr.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 4.0, 1.0])), str(src))
    assert cli("sr", src, dst, "--model", edsr_run, "--quiet") == 0
    assert nib.load(str(dst)).shape == (20, 24, 20)
    # a TransMRSR ablation does not apply to the baseline: exit 2, one line
    capsys.readouterr()
    assert cli(*edsr_args(data_dir, tmp_path / "x", 2, "--ablation", "no-gp")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--arch edsr" in err[0]


def test_train_sr_arch_edsr_resume_is_identical(data_dir, tmp_path):
    assert cli(*edsr_args(data_dir, tmp_path / "a", 5)) == 0
    assert cli(*edsr_args(data_dir, tmp_path / "b", 2)) == 0
    assert cli(*edsr_args(data_dir, tmp_path / "b", 5, "--resume")) == 0
    sa, sb = load_state(tmp_path / "a"), load_state(tmp_path / "b")
    assert sa["step"] == sb["step"] == 5
    for key in sa["model"]:
        assert torch.equal(sa["model"][key], sb["model"][key]), key
    assert sa["opt"]["state"].keys() == sb["opt"]["state"].keys()
    for k in sa["opt"]["state"]:
        for name, value in sa["opt"]["state"][k].items():
            assert torch.equal(value, sb["opt"]["state"][k][name]), (k, name)


# ============================================================================ benchmarks/quality.py
def test_quality_quick(quality, data_dir, edsr_run, tmp_path, capsys):
    crop = (40, 40, 32)
    runs, out_json = tmp_path / "runs", tmp_path / "q.json"
    argv = [
        "--quick",
        "--scales",
        SCALE,
        "--steps",
        2,
        "--gan-steps",
        2,
        "--centroid-samples",
        50,
        "--crop",
        *crop,
        "--data",
        data_dir,
        "--runs",
        runs,
        "--json",
        out_json,
        "--models",
        f"edsr={edsr_run}",
    ]
    capsys.readouterr()
    quality.main([str(a) for a in argv])
    stdout = capsys.readouterr().out
    # one markdown table with a header line
    assert f"## ×{SCALE}" in stdout
    header = next(line for line in stdout.splitlines() if line.startswith("# "))
    for part in (
        "commit ",
        "torch ",
        "threads",
        "command: `python benchmarks/quality.py --quick",
        "budget per trained model: 2 steps",
    ):
        assert part in header, part
    rows = [line for line in stdout.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    names = [r.split("|")[1].strip() for r in rows]
    assert names == [
        "cubic",
        "trilinear",
        "EDSR",
        "TransMRSR",
        "TransMRSR",
        "no-gp",
        "no-sdt",
        "no-mref",
        "no-sc",
        "frozen-gp",
    ]
    assert [r.split("|")[2].strip() for r in rows[3:5]] == ["0.5", "1"]
    assert "Paper, Table 3" in stdout and "no-mref > no-gp > no-sc > no-sdt" in stdout and "Kendall" in stdout

    # cubic and trilinear are what evaluate() gives for the same crop of the held-out subject
    result = json.loads(out_json.read_text())[0]
    assert result["scale"] == SCALE
    hr, mask = quality.held_out_volume(crop)
    assert hr.shape == crop and 0 < mask.mean() < 1
    lr = simulate_thick(hr, 2, SCALE, "box")
    direct = {r.name: r for r in evaluate(0.9 * hr, hr, lr, 2, SCALE, mask=mask)}
    by_name = {}
    for r in result["rows"]:
        by_name.setdefault(r["method"], r)
    for name in ("cubic", "trilinear"):
        assert by_name[name]["psnr_mask"] == direct[name].psnr_mask and by_name[name]["ssim"] == direct[name].ssim
        row = next(line for line in rows if line.split("|")[1].strip() == name)
        assert f"| {direct[name].psnr_mask:.2f} | {direct[name].ssim_mask:.4f} | {direct[name].psnr:.2f} |" in row
    for r in result["rows"]:
        assert all(math.isfinite(r[k]) for k in ("psnr", "ssim", "psnr_mask", "ssim_mask"))
    assert by_name["EDSR"]["source"] == f"given: {edsr_run}"

    # every TransMRSR variant was trained with one recipe, one flag apart, and is reused as is
    recipes = {}
    for name in ("transmrsr", "no-gp", "no-sdt", "no-mref", "no-sc", "frozen-gp"):
        folder = runs / f"x{SCALE}" / name
        recipes[name] = json.loads((folder / quality.RECIPE_NAME).read_text())["recipe"]
        log = read_log(folder)
        assert log[-1]["event"] == "done" and log[-1]["step"] == 2
        assert log[0]["options"]["ablation"] == (None if name == "transmrsr" else name)
    base = recipes.pop("transmrsr")
    assert all(r == base + ["--ablation", name] for name, r in recipes.items())
    folder = runs / f"x{SCALE}" / "no-sc"
    before = (folder / "log.jsonl").read_text()
    quality.ensure_trained(folder, base + ["--ablation", "no-sc"], 2)
    assert (folder / "log.jsonl").read_text() == before
    with pytest.raises(SystemExit, match="another recipe"):
        quality.ensure_trained(folder, base + ["--ablation", "no-gp"], 2)
