"""The training part, driven for real on a CPU: stage 1 (StyleSwin prior), fit-centroids,
stage 2 (SR fine-tuning), the perceptual loss, kill-and-resume, a 2-process (gloo) run,
the ablation switches and the datasets.

Data: three "subjects" cut from the ICBM152 2009a T1 that nilearn ships (downsampled to 4 mm,
three different 24x28x16 blocks of the brain), written with nibabel in a module fixture. One
stage-1 run (``tiny`` preset, a few steps) and its centroid fit are made once and shared.
Expected values are computed in the tests (numpy / torch), not taken from the code under test.
The whole module runs in a few minutes on a 2-core CPU.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from benchmarks.launch import cpu_env, torchrun
from transmrsr import TransMRSR
from transmrsr.cli import main
from transmrsr.config import ConfigError, SRTrainConfig, TransMRSRConfig
from transmrsr.data import IntensityScaler, interpolate_to_thin, load_volume, simulate_thick
from transmrsr.data.datasets import Augment, HRSliceDataset, SRPairDataset, find_volumes, split_subjects
from transmrsr.errors import ParameterError
from transmrsr.losses import PerceptualLoss, PerceptualWeightsError, VGG19Features, load_vgg19_features
from transmrsr.models import StyleSwinGenerator
from transmrsr.models.truncation import sample_mapping_latents
from transmrsr.training import build_sr_model, fit_generator_centroids

REPO = Path(__file__).resolve().parents[1]
CANVAS = 32  # the tiny preset's img_size
BATCH = 4
SCALE = 4
NUM_CENTROID_SAMPLES = 600


# ---------------------------------------------------------------------------- helpers
def cli(*args) -> int:
    return main([str(a) for a in args])


def run_args(command, data, out, steps, *extra) -> list:
    """A short ``tiny`` training run's command line: a step a log record, no checkpoint before the end."""
    return [
        command,
        "--data",
        data,
        "--out",
        out,
        "--preset",
        "tiny",
        "--batch-size",
        BATCH,
        "--max-steps",
        steps,
        "--log-every",
        1,
        "--checkpoint-every",
        100000,
        *extra,
    ]


def gan_args(data, out, steps, *extra) -> list:
    return run_args("train-gan", data, out, steps, "--sample-every", 0, *extra)


def sr_args(data, gan, out, steps, *extra) -> list:
    return run_args("train-sr", data, out, steps, "--gan", gan, "--scale", SCALE, *extra)


def read_log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(folder) / "log.jsonl").read_text().splitlines() if line.strip()]


def step_records(log: list[dict]) -> list[dict]:
    return [r for r in log if "event" not in r]


def load_state(folder: Path) -> dict:
    return torch.load(Path(folder) / "training_state.pt", map_location="cpu", weights_only=True)


def assert_identical(a, b, where: str = "state") -> None:
    """Recursive exact equality of nested dicts / lists / tensors / numbers."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        assert torch.is_tensor(a) and torch.is_tensor(b), f"{where}: tensor vs {type(b).__name__}"
        assert a.shape == b.shape and a.dtype == b.dtype, f"{where}: {a.shape}/{a.dtype} vs {b.shape}/{b.dtype}"
        assert torch.equal(a, b), (
            f"{where}: tensors differ (max |diff| {(a.double() - b.double()).abs().max().item():.3g})"
        )
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for k in a:
            assert_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        pass
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def place(img: np.ndarray, size: int = CANVAS) -> np.ndarray:
    """Centre-pad a slice no larger than the canvas (written here, independent of the package)."""
    out = np.zeros((size, size), dtype=np.float32)
    oy, ox = (size - img.shape[0]) // 2, (size - img.shape[1]) // 2
    out[oy : oy + img.shape[0], ox : ox + img.shape[1]] = img
    return out


def dihedral(a: np.ndarray) -> list[np.ndarray]:
    """The flip / flip / transpose combinations the augmentation may apply, in its order."""
    outs = []
    for f0 in (False, True):
        for f1 in (False, True):
            for t in (False, True):
                x = a[::-1, :] if f0 else a
                x = x[:, ::-1] if f1 else x
                x = x.T if t else x
                outs.append(np.ascontiguousarray(x))
    return outs


# ---------------------------------------------------------------------------- fixtures
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Three subjects: different 24x28x16 blocks of the ICBM152 T1 at 4 mm."""
    src = importlib.resources.files("nilearn.datasets") / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    img = nib.load(str(src))
    vol = np.asarray(img.dataobj, dtype=np.float32)[::4, ::4, ::4]  # 50 x 59 x 48
    affine = img.affine.copy()
    affine[:3, :3] *= 4
    folder = tmp_path_factory.mktemp("data")
    for i, (x, y, z) in enumerate([(8, 10, 10), (14, 16, 14), (18, 24, 20)]):
        block = np.ascontiguousarray(vol[x : x + 24, y : y + 28, z : z + 16])
        assert block.std() > 0
        nib.save(nib.Nifti1Image(block, affine), str(folder / f"sub{i}.nii.gz"))
    return folder


@pytest.fixture(scope="module")
def gan_run(data_dir, tmp_path_factory) -> dict:
    """One stage-1 run (6 steps, samples every 3) and its centroid fit."""
    out = tmp_path_factory.mktemp("gan") / "run"
    rc = cli(*gan_args(data_dir, out, 6, "--sample-every", 3))
    assert rc == 0
    before_fit = {k: v.clone() for k, v in StyleSwinGenerator.from_pretrained(out).state_dict().items()}
    state = load_state(out)
    log_before = (out / "log.jsonl").read_text()
    rc = cli("fit-centroids", "--gan", out, "--num-samples", NUM_CENTROID_SAMPLES, "--seed", 0)
    assert rc == 0
    return {"dir": out, "before_fit": before_fit, "state": state, "log": log_before}


@pytest.fixture(scope="module")
def gan_dir(gan_run) -> Path:
    return gan_run["dir"]


@pytest.fixture(scope="module")
def sr_run(data_dir, gan_dir, tmp_path_factory) -> Path:
    """A short stage-2 run with --no-perceptual."""
    out = tmp_path_factory.mktemp("sr") / "run"
    assert cli(*sr_args(data_dir, gan_dir, out, 5, "--no-perceptual")) == 0
    return out


@pytest.fixture(scope="module")
def steps_per_epoch(data_dir) -> int:
    train, _ = split_subjects(find_volumes(data_dir), 0.2, 0)
    return len(SRPairDataset(train, CANVAS, SCALE)) // BATCH


@pytest.fixture(scope="module")
def vgg_files(tmp_path_factory) -> dict:
    """Random VGG19 weights written in timm's layout (plus an unrelated key)."""
    torch.manual_seed(7)
    vgg = VGG19Features()
    state = {k: v.detach().clone().contiguous() for k, v in vgg.state_dict().items()}
    assert all(k.startswith("features.") for k in state)
    folder = tmp_path_factory.mktemp("vgg")
    good_dir = folder / "timm-vgg19"
    good_dir.mkdir()
    file = good_dir / "model.safetensors"
    save_file({**state, "head.fc.weight": torch.randn(10, 4096), "head.fc.bias": torch.zeros(10)}, str(file))
    broken = folder / "missing-layer.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith("features.10.")}, str(broken))
    return {"state": state, "file": file, "dir": good_dir, "broken": broken}


# ============================================================================ 1. stage 1
def test_stage1_outputs(gan_run):
    out = gan_run["dir"]
    for name in ("config.json", "model.safetensors", "training_state.pt", "log.jsonl"):
        assert (out / name).is_file(), name
    gen = StyleSwinGenerator.from_pretrained(out)
    assert gen.config.preset == "tiny" and gen.config.img_size == CANVAS
    # the saved model is the EMA generator of the training state
    state = gan_run["state"]
    assert state["stage"] == "gan" and state["step"] == 6
    assert_identical(gan_run["before_fit"], dict(state["gen_ema"]), "model.safetensors vs gen_ema")
    for key in ("gen", "disc", "gen_ema", "opt_g", "opt_d", "epoch", "batch_in_epoch"):
        assert key in state
    # the EMA moved away from the raw generator but only a little (decay 0.999 over 6 steps)
    assert any(not torch.equal(state["gen"][k], state["gen_ema"][k]) for k in state["gen"])
    with torch.no_grad():
        img = gen(torch.randn(2, gen.config.style_dim))
    assert img.shape == (2, 1, CANVAS, CANVAS) and torch.isfinite(img).all()

    log = [json.loads(line) for line in gan_run["log"].splitlines()]
    assert log[0]["event"] == "start" and log[0]["stage"] == "gan" and log[0]["processes"] == 1
    assert log[0]["options"]["max_steps"] == 6
    assert log[-1]["event"] == "done" and log[-1]["step"] == 6
    steps = step_records(log)
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    for r in steps:
        for key in ("loss_d", "loss_g", "it_s"):
            assert isinstance(r[key], float) and math.isfinite(r[key]), (key, r)
        assert r["it_s"] > 0
    assert steps[0]["r1"] is not None  # lazy R1 on step 0

    from PIL import Image

    samples = sorted(p.name for p in (out / "samples").glob("*.png"))
    assert samples == ["step0000003.png", "step0000006.png"]
    with Image.open(out / "samples" / samples[-1]) as im:
        assert im.size == (4 * CANVAS, 4 * CANVAS)  # 16 samples in a 4x4 grid


def test_stage1_rerun_without_resume_refused(gan_run, data_dir, capsys):
    out = gan_run["dir"]
    log_before = (out / "log.jsonl").read_text()
    state_before = (out / "training_state.pt").read_bytes()
    capsys.readouterr()
    rc = cli(*gan_args(data_dir, out, 6))
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "--resume" in lines[0] and "train-gan" in lines[0]
    assert (out / "log.jsonl").read_text() == log_before
    assert (out / "training_state.pt").read_bytes() == state_before


def test_stage1_tiny_data_is_an_error(tmp_path, data_dir, capsys):
    """Fewer slices than a batch: exit 2, one line, no training."""
    capsys.readouterr()
    rc = cli(*gan_args(data_dir, tmp_path / "out", 2, "--batch-size", 100000))
    assert rc == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "training_state.pt").exists()


# ============================================================================ 2. fit-centroids
def test_fit_centroids(gan_run, tmp_path, capsys):
    out = gan_run["dir"]
    gen = StyleSwinGenerator.from_pretrained(out)
    k, d = gen.config.num_centroids, gen.config.style_dim
    assert gen.truncation.is_fitted
    c = gen.truncation.centroids
    assert c.shape == (k, d) and torch.isfinite(c).all() and c.abs().sum() > 0
    assert len({tuple(row.tolist()) for row in c}) == k  # distinct centroids
    # fitting changed nothing but the truncation buffers
    after = gen.state_dict()
    for name, value in gan_run["before_fit"].items():
        if not name.startswith("truncation."):
            assert torch.equal(value, after[name]), name

    # k-means of the mapping network's latents: each centroid is (close to) the mean of the
    # latents assigned to it (Lloyd's fixed point), and it is nearer than a random other latent
    latents = sample_mapping_latents(gen.mapping, NUM_CENTROID_SAMPLES, d, seed=0).double()
    dist = torch.cdist(latents, c.double())
    assign = dist.argmin(1)
    for j in range(k):
        members = latents[assign == j]
        assert len(members) > 0, f"centroid {j} has no latents"
        spread = latents.std(0).mean()
        assert (members.mean(0) - c[j].double()).norm() < 0.05 * spread * math.sqrt(d), j
    fresh = sample_mapping_latents(gen.mapping, 300, d, seed=123).double()
    nearest = torch.cdist(fresh, c.double()).min(1).values.mean()
    other = (fresh - fresh[torch.randperm(len(fresh))]).norm(dim=1).mean()
    assert nearest < other

    # the same seed gives the same centroids
    copy = tmp_path / "gan"
    shutil.copytree(out, copy)
    again = fit_generator_centroids(copy, NUM_CENTROID_SAMPLES, seed=0)
    assert torch.equal(again, c)
    assert torch.equal(StyleSwinGenerator.from_pretrained(copy).truncation.centroids, c)
    # --clusters other than the preset's: exit 2, one line
    capsys.readouterr()
    assert cli("fit-centroids", "--gan", copy, "--num-samples", 50, "--clusters", k + 1) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--clusters {k + 1} differs from the model's num_centroids {k}" in err[0], err
    with pytest.raises(ParameterError, match=f"the number of clusters {k + 1} differs") as exc:
        fit_generator_centroids(copy, 50, clusters=k + 1)
    assert exc.value.params.keys() == {"clusters"}


# ============================================================================ 3. stage 2
def test_build_sr_model_takes_the_prior(gan_dir):
    gen = StyleSwinGenerator.from_pretrained(gan_dir)
    model, loaded = build_sr_model(SRTrainConfig(preset="tiny", gan=str(gan_dir)))
    assert loaded
    assert_identical(dict(model.decoder.state_dict()), dict(gen.synthesis.state_dict()), "decoder vs synthesis")
    assert model.truncation.is_fitted and torch.equal(model.truncation.centroids, gen.truncation.centroids)

    torch.manual_seed(0)
    no_gp, loaded = build_sr_model(SRTrainConfig(preset="tiny", gan=str(gan_dir), ablation="no-gp"))
    assert not loaded
    gen_sd, dec_sd = gen.synthesis.state_dict(), no_gp.decoder.state_dict()
    assert set(gen_sd) == set(dec_sd)
    assert any(not torch.equal(gen_sd[k], dec_sd[k]) for k in gen_sd if gen_sd[k].is_floating_point())
    # Table 3's w/o GP has no SDT either: no centroids are taken (issue 22)
    assert not no_gp.truncation.is_fitted and not no_gp.config.use_sdt

    # without a generator: nothing loaded, no centroids
    bare, loaded = build_sr_model(SRTrainConfig(preset="tiny"))
    assert not loaded and not bare.truncation.is_fitted


def test_train_sr_init_fine_tunes_a_saved_model(sr_run, data_dir, tmp_path, capsys):
    """``--init`` starts from every weight of a saved SR model (centroids included); a model of
    another architecture or size is refused with a message naming what differs."""
    start = TransMRSR.from_pretrained(sr_run)
    model, loaded = build_sr_model(SRTrainConfig(preset="tiny", init=str(sr_run)))
    assert loaded
    assert_identical(dict(model.state_dict()), dict(start.state_dict()), "init vs saved")
    # one step at learning rate 0 leaves the saved weights as they were
    out = tmp_path / "ft"
    assert cli(*sr_args(data_dir, "", out, 1, "--init", sr_run, "--lr", 0, "--no-perceptual")) == 0
    assert_identical(dict(TransMRSR.from_pretrained(out).state_dict()), dict(start.state_dict()), "fine-tuned at lr 0")
    with pytest.raises(ValueError, match="holds a TransMRSR, but this run trains a EDSR"):
        build_sr_model(SRTrainConfig(preset="tiny", init=str(sr_run), arch="edsr"))
    with pytest.raises(ValueError, match="use_skip"):
        build_sr_model(SRTrainConfig(preset="tiny", init=str(sr_run), ablation="no-sc"))


def test_stage2_outputs(sr_run, gan_dir):
    model = TransMRSR.from_pretrained(sr_run)
    assert model.config.preset == "tiny"
    gen = StyleSwinGenerator.from_pretrained(gan_dir)
    # centroids are buffers: carried over from the prior, not trained
    assert torch.equal(model.truncation.centroids, gen.truncation.centroids) and model.truncation.is_fitted
    # the decoder started at the prior and moved a little in 5 steps
    dec, syn = model.decoder.state_dict(), gen.synthesis.state_dict()
    assert any(not torch.equal(dec[k], syn[k]) for k in syn if syn[k].is_floating_point())
    state = load_state(sr_run)
    assert state["stage"] == "sr" and state["step"] == 5
    assert_identical(dict(model.state_dict()), dict(state["model"]), "saved model vs state")

    log = read_log(sr_run)
    start = log[0]
    assert start["event"] == "start" and start["stage"] == "sr"
    assert start["perceptual"] is False and start["prior_loaded"] is True and start["processes"] == 1
    assert start["options"]["perceptual"] is False
    notes = [r for r in log if r.get("event") == "note"]
    assert len(notes) == 1 and notes[0]["message"] == "perceptual terms off (perceptual=False): loss = L1 only"
    steps = step_records(log)
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5]
    for r in steps:
        assert r["content"] is None and r["style"] is None
        assert math.isfinite(r["l1"]) and r["loss"] == pytest.approx(r["l1"])
    assert log[-1]["event"] == "done" and log[-1]["step"] == 5
    card = (sr_run / "README.md").read_text()
    assert "L1 only" in card and "content" not in card.split("loss", 1)[1].split(";")[0]


def test_sr_cli_with_trained_model(sr_run, data_dir, tmp_path, capsys):
    hr_path = data_dir / "sub0.nii.gz"
    lr_path, sr_path = tmp_path / "lr.nii.gz", tmp_path / "sr.nii.gz"
    assert cli("simulate", hr_path, lr_path, "--scale", SCALE, "--axis", 2, "--quiet") == 0
    hr = load_volume(hr_path)
    assert load_volume(lr_path).shape == (24, 28, 16 // SCALE)
    capsys.readouterr()
    assert cli("sr", lr_path, sr_path, "--model", sr_run, "--quiet") == 0
    sr = load_volume(sr_path)
    assert sr.shape == hr.shape
    assert np.allclose(sr.affine, hr.affine, atol=1e-4)
    assert np.isfinite(sr.data).all() and sr.data.std() > 0


# ============================================================================ 4. perceptual loss
def test_load_vgg19_features(vgg_files):
    for source in (vgg_files["file"], vgg_files["dir"], str(vgg_files["file"])):
        vgg = load_vgg19_features(source)
        assert_identical(dict(vgg.state_dict()), vgg_files["state"], f"weights from {source}")
        assert not any(p.requires_grad for p in vgg.parameters()) and not vgg.training
    with pytest.raises(PerceptualWeightsError) as info:
        load_vgg19_features(vgg_files["broken"])
    assert str(vgg_files["broken"]) in str(info.value)
    missing = vgg_files["dir"].parent / "nowhere.safetensors"
    with pytest.raises(PerceptualWeightsError) as info:
        load_vgg19_features(missing)
    assert str(missing) in str(info.value)


def test_perceptual_loss_values_and_gradient(vgg_files, data_dir):
    loss = PerceptualLoss(load_vgg19_features(vgg_files["file"]))
    ds = SRPairDataset([data_dir / "sub1.nii.gz"], CANVAS, SCALE, random_crop=False)
    pairs = [ds[i] for i in range(0, len(ds), max(1, len(ds) // 3))][:3]
    lr = torch.stack([p[0] for p in pairs])
    hr = torch.stack([p[1] for p in pairs])
    content, style = loss(hr.clone(), hr)
    assert content.item() == 0 and style.item() == 0
    sr = lr.clone().requires_grad_(True)
    content, style = loss(sr, hr)
    assert content.item() > 0 and style.item() > 0
    (content + style).backward()
    assert sr.grad is not None and torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.vgg.parameters())


def test_train_sr_with_vgg_weights(vgg_files, data_dir, gan_dir, tmp_path):
    out = tmp_path / "sr"
    assert cli(*sr_args(data_dir, gan_dir, out, 3, "--vgg-weights", vgg_files["file"])) == 0
    log = read_log(out)
    assert log[0]["perceptual"] is True and not any(r.get("event") == "note" for r in log)
    steps = step_records(log)
    assert len(steps) == 3
    for r in steps:
        assert r["content"] is not None and r["style"] is not None
        assert r["content"] > 0 and r["style"] > 0
        assert r["loss"] == pytest.approx(r["l1"] + 0.5 * r["content"] + 0.5 * r["style"], rel=1e-4)
    card = (out / "README.md").read_text()
    assert "content" in card and "style" in card and "L1 only" not in card
    TransMRSR.from_pretrained(out)


def test_train_sr_without_weights_offline_says_no_perceptual(data_dir, gan_dir, tmp_path):
    hf = tmp_path / "hf"
    hf.mkdir()
    out = tmp_path / "sr"
    env = cpu_env("TRANSMRSR_DEBUG", HF_HOME=str(hf), HF_HUB_CACHE=str(hf / "hub"), HF_HUB_OFFLINE="1")
    env.pop("HF_TOKEN", None)
    args = sr_args(data_dir, gan_dir, out, 2)
    proc = subprocess.run(
        [sys.executable, "-m", "transmrsr", *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "--no-perceptual" in lines[0] and "train-sr" in lines[0]
    assert not (out / "training_state.pt").exists() and not (out / "model.safetensors").exists()


# ============================================================================ 5. resume
def test_stage1_split_resume_is_identical(data_dir, tmp_path, capsys):
    n, k = 7, 3
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(*gan_args(data_dir, a, n)) == 0
    assert cli(*gan_args(data_dir, b, k)) == 0
    assert load_state(b)["step"] == k
    capsys.readouterr()
    assert cli(*gan_args(data_dir, b, n, "--resume")) == 0
    assert "resumed" in capsys.readouterr().out
    sa, sb = load_state(a), load_state(b)
    assert sa["step"] == sb["step"] == n
    assert_identical(sa, sb, "stage-1 state")
    assert_identical(
        dict(StyleSwinGenerator.from_pretrained(a).state_dict()),
        dict(StyleSwinGenerator.from_pretrained(b).state_dict()),
        "saved generator",
    )
    log = read_log(b)
    assert [r.get("event") for r in log if "event" in r] == ["start", "done", "resume", "done"]
    assert [r["step"] for r in step_records(log)] == list(range(1, n + 1))


def test_stage2_split_resume_across_epoch_is_identical(data_dir, gan_dir, steps_per_epoch, tmp_path, capsys):
    spe = steps_per_epoch
    assert spe >= 3
    n, k = spe + 2, spe - 2  # the resumed part crosses the epoch boundary
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(*sr_args(data_dir, gan_dir, a, n, "--no-perceptual")) == 0
    assert cli(*sr_args(data_dir, gan_dir, b, k, "--no-perceptual")) == 0
    assert load_state(b)["step"] == k and load_state(b)["epoch"] == 0
    capsys.readouterr()
    assert cli(*sr_args(data_dir, gan_dir, b, n, "--no-perceptual", "--resume")) == 0
    assert "resumed" in capsys.readouterr().out
    sa, sb = load_state(a), load_state(b)
    assert sa["step"] == sb["step"] == n and sa["epoch"] == 1
    assert sa["sched"]["last_epoch"] == 1 and len(sa["history"]) == 1 and math.isfinite(sa["history"][0])
    assert_identical(sa, sb, "stage-2 state")
    assert_identical(
        dict(TransMRSR.from_pretrained(a).state_dict()), dict(TransMRSR.from_pretrained(b).state_dict()), "saved model"
    )
    for folder in (a, b):
        epochs = [r for r in read_log(folder) if r.get("event") == "epoch"]
        assert len(epochs) == 1 and epochs[0]["step"] == spe and math.isfinite(epochs[0]["val_psnr"])
    events = [r["event"] for r in read_log(b) if "event" in r]
    assert events == ["start", "note", "done", "resume", "epoch", "done"]


def test_stage2_last_epoch_is_validated_and_can_be_the_best(data_dir, gan_dir, steps_per_epoch, tmp_path):
    """A run whose last step ends an epoch (``--epochs N`` alone, or ``--max-steps`` on a boundary) validates that
    epoch too, so the lowest-learning-rate epoch can be the saved best model (it was skipped before)."""
    spe = steps_per_epoch
    out = tmp_path / "run"
    assert cli(*sr_args(data_dir, gan_dir, out, 2 * spe, "--no-perceptual", "--epochs", 2)) == 0
    log = read_log(out)
    epochs = [r for r in log if r.get("event") == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and [r["step"] for r in epochs] == [spe, 2 * spe]
    assert all(math.isfinite(r["val_psnr"]) for r in epochs)
    state = load_state(out)
    assert state["step"] == 2 * spe and state["epoch"] == 2 and len(state["history"]) == 2
    assert state["sched"]["last_epoch"] == 2
    best = max(r["val_psnr"] for r in epochs)
    assert state["best"] == best and log[-1]["event"] == "done" and log[-1]["best_val_psnr"] == best
    saved = TransMRSR.from_pretrained(out).state_dict()
    if epochs[1]["val_psnr"] > epochs[0]["val_psnr"]:  # the last epoch won: its weights are the saved model
        assert_identical(dict(saved), dict(state["model"]), "saved model vs last state")


@pytest.mark.parametrize("stage", ["train-sr", "train-gan"])
def test_sigterm_then_resume(stage, data_dir, gan_dir, tmp_path):
    """SIGTERM a running training process: it saves and exits 0; --resume then continues
    exactly as an uninterrupted run of the same length."""

    def args(out, steps, *extra):
        if stage == "train-sr":
            return sr_args(data_dir, gan_dir, out, steps, "--no-perceptual", *extra)
        return gan_args(data_dir, out, steps, *extra)

    killed = tmp_path / "killed"
    with open(tmp_path / "stdout", "w") as so, open(tmp_path / "stderr", "w") as se:
        proc = subprocess.Popen(
            [sys.executable, "-m", "transmrsr", *map(str, args(killed, 100000))],
            stdout=so,
            stderr=se,
            env=cpu_env("TRANSMRSR_DEBUG"),
        )
        try:
            deadline = time.monotonic() + 240
            while True:
                assert proc.poll() is None, f"training ended early: {(tmp_path / 'stderr').read_text()[-2000:]}"
                if (killed / "log.jsonl").exists() and len(step_records(read_log(killed))) >= 3:
                    break
                assert time.monotonic() < deadline, "no steps logged in time"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert rc == 0, (tmp_path / "stderr").read_text()[-2000:]
    said = (tmp_path / "stdout").read_text()
    assert "stopped at step" in said and "resume the run to continue it" in said
    assert f"transmrsr {stage}: to continue the run, give the same command with --resume" in said
    log = read_log(killed)
    s = load_state(killed)["step"]
    assert s >= 3
    assert log[-1]["event"] == "stopped" and log[-1]["step"] == s
    assert step_records(log)[-1]["step"] == s
    assert (killed / "model.safetensors").is_file()

    assert cli(*args(killed, s + 3, "--resume")) == 0
    straight = tmp_path / "straight"
    assert cli(*args(straight, s + 3)) == 0
    sk, ss = load_state(killed), load_state(straight)
    assert sk["step"] == ss["step"] == s + 3
    models = ("model",) if stage == "train-sr" else ("gen", "gen_ema", "disc")
    for name in models:
        assert_identical(dict(sk[name]), dict(ss[name]), f"{name} after kill + resume")
    assert_identical(sk, ss, "state after kill + resume")
    assert [r["step"] for r in step_records(read_log(killed))] == list(range(1, s + 4))


# ============================================================================ 6. distributed (gloo)
@pytest.mark.parametrize("stage", ["train-sr", "train-gan"])
def test_two_process_cpu_run(stage, data_dir, gan_dir, tmp_path):
    out = tmp_path / "out"
    if stage == "train-sr":
        args = sr_args(data_dir, gan_dir, out, 4, "--no-perceptual", "--batch-size", 2)
    else:
        args = gan_args(data_dir, out, 4, "--batch-size", 2)
    cmd = [
        *torchrun(2),
        "-m",
        "transmrsr",
        *map(str, args),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cpu_env("TRANSMRSR_DEBUG"), timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = read_log(out)
    assert log[0]["event"] == "start" and log[0]["processes"] == 2
    assert log[-1]["event"] == "done" and log[-1]["step"] == 4
    assert [r["step"] for r in step_records(log)] == [1, 2, 3, 4]  # logged once, by the main process
    assert load_state(out)["step"] == 4
    if stage == "train-sr":
        TransMRSR.from_pretrained(out)
    else:
        StyleSwinGenerator.from_pretrained(out)


def test_two_process_resume_is_identical(data_dir, gan_dir, tmp_path):
    def run(out, steps, *extra):
        args = sr_args(data_dir, gan_dir, out, steps, "--no-perceptual", "--batch-size", 2, *extra)
        cmd = [
            *torchrun(2),
            "-m",
            "transmrsr",
            *map(str, args),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=cpu_env("TRANSMRSR_DEBUG"), timeout=400)
        assert proc.returncode == 0, proc.stderr[-3000:]

    run(tmp_path / "a", 6)
    run(tmp_path / "b", 3)
    run(tmp_path / "b", 6, "--resume")
    sa, sb = load_state(tmp_path / "a"), load_state(tmp_path / "b")
    assert sa["step"] == sb["step"] == 6
    assert_identical(dict(sa["model"]), dict(sb["model"]), "model after a 2-process resume")


def test_resume_with_loader_workers_is_identical(data_dir, gan_dir, tmp_path):
    from transmrsr.training import train_sr

    def opts(out, steps, resume=False):
        return SRTrainConfig(
            data=str(data_dir),
            gan=str(gan_dir),
            out=str(out),
            preset="tiny",
            scale=SCALE,
            batch_size=BATCH,
            max_steps=steps,
            perceptual=False,
            num_workers=1,
            resume=resume,
            checkpoint_every=100000,
        )

    train_sr(opts(tmp_path / "a", 6))
    train_sr(opts(tmp_path / "b", 3))
    train_sr(opts(tmp_path / "b", 6, resume=True))
    sa, sb = load_state(tmp_path / "a"), load_state(tmp_path / "b")
    assert_identical(dict(sa["model"]), dict(sb["model"]), "model after resume with a loader worker")


# ============================================================================ 7. ablations
# the config fields each ablation turns off (issue 22: w/o GP drops SDT, w/o SC the global residual)
SWITCHES = {
    None: None,
    "no-gp": {"use_generative_prior", "use_sdt"},
    "no-sdt": {"use_sdt"},
    "no-mref": {"use_cwss"},
    "no-sc": {"use_skip", "use_residual"},
}


def test_ablations_give_different_models(gan_dir, data_dir):
    ds = SRPairDataset([data_dir / "sub2.nii.gz"], CANVAS, SCALE, random_crop=False)
    x = torch.stack([ds[0][0], ds[len(ds) // 2][0]])
    models, outputs = {}, {}
    for ablation in SWITCHES:
        torch.manual_seed(0)
        model, loaded = build_sr_model(SRTrainConfig(preset="tiny", gan=str(gan_dir), ablation=ablation, phi=0.5))
        assert loaded == (ablation != "no-gp")
        assert model.truncation.is_fitted == (ablation != "no-gp") and model.config.phi == 0.5
        models[ablation] = model.eval()
        with torch.no_grad():
            outputs[ablation] = model(x)
        assert outputs[ablation].shape == x.shape and torch.isfinite(outputs[ablation]).all()
    base = models[None].config.to_dict()
    assert all(base[s] is True for switches in SWITCHES.values() if switches for s in switches)
    for ablation, switches in SWITCHES.items():
        if ablation is None:
            continue
        cfg = models[ablation].config.to_dict()
        assert {k for k in base if base[k] != cfg[k]} == switches, ablation
        assert all(cfg[s] is False for s in switches)
    assert models["no-mref"].cwss is None
    assert not any(n.startswith("cwss.") for n, _ in models["no-mref"].named_parameters())
    for ablation in ("no-gp", "no-sdt", "no-sc", None):
        assert models[ablation].cwss is not None
    names = list(SWITCHES)
    for i, p in enumerate(names):
        for q in names[i + 1 :]:
            diff = (outputs[p] - outputs[q]).abs().max().item()
            assert diff > 1e-6, f"{p} and {q} give the same output (max |diff| {diff:.2g})"
    with pytest.raises(ValueError, match="no-such"):
        build_sr_model(SRTrainConfig(preset="tiny", gan=str(gan_dir), ablation="no-such"))


# ============================================================================ 8. datasets
def test_split_subjects():
    paths = [Path(f"/data/s{i:02d}.nii.gz") for i in range(10)]
    train, val = split_subjects(paths, 0.2, seed=3)
    assert len(val) == 2 and len(train) == 8
    assert not set(train) & set(val) and set(train) | set(val) == set(paths)
    assert split_subjects(list(reversed(paths)), 0.2, seed=3) == (train, val)  # by file, order-free
    assert split_subjects(paths, 0.2, seed=3) == (train, val)
    assert len({tuple(split_subjects(paths, 0.2, seed=s)[1]) for s in range(8)}) > 1
    assert split_subjects(paths[:2], 0.1, seed=0)[1] != []  # at least one of each from two volumes
    assert split_subjects(paths[:2], 0.0, seed=0) == (paths[:2], [])  # 0: no validation, train on all
    assert split_subjects(paths[:2], 0.9, seed=0)[0] != []
    assert split_subjects(paths[:1], 0.5, seed=0) == ([paths[0]], [])


def test_hr_slice_dataset(data_dir):
    paths = find_volumes(data_dir)
    ds = HRSliceDataset(paths, CANVAS)
    assert {a for _, a, _ in ds.index} == {0, 1, 2}
    assert {v for v, _, _ in ds.index} == {0, 1, 2}
    scaled = []
    for p in paths:
        v = load_volume(p).data
        scaled.append(IntensityScaler.fit(v).forward(v))
    for axis in (0, 1, 2):
        i = next(j for j, (_, a, _) in enumerate(ds.index) if a == axis)
        vi, _, s = ds.index[i]
        item = ds[i]
        assert item.shape == (1, CANVAS, CANVAS) and item.dtype == torch.float32
        expected = place(np.take(scaled[vi], s, axis=axis))
        np.testing.assert_allclose(item[0].numpy(), expected, atol=1e-6)
    for vi, a, s in ds.index:  # background slices left out
        assert np.take(scaled[vi], s, axis=a).max() > 0.05


def test_sr_pair_dataset_matches_simulation(data_dir):
    path = data_dir / "sub0.nii.gz"
    ds = SRPairDataset([path], CANVAS, SCALE, thick_axis=2, random_crop=False)
    assert {a for _, a, _ in ds.index} == {0, 1}  # planes holding the thick axis
    raw = load_volume(path).data
    thick = simulate_thick(raw, 2, SCALE, "box")
    # the rule of inference: the scaler is fitted on the thick volume (all a user has), not the HR
    scaler = IntensityScaler.fit(thick)
    assert scaler != IntensityScaler.fit(raw)
    hr = scaler.forward(raw)
    lr = interpolate_to_thin(scaler.forward(thick), 2, SCALE, n_thin=hr.shape[2])
    assert lr.shape == hr.shape
    for axis in (0, 1):
        i = next(j for j, (_, a, _) in enumerate(ds.index) if a == axis)
        _, _, s = ds.index[i + 3]
        lr_t, hr_t = ds[i + 3]
        assert lr_t.shape == hr_t.shape == (1, CANVAS, CANVAS)
        np.testing.assert_allclose(hr_t[0].numpy(), place(np.take(hr, s, axis=axis)), atol=1e-6)
        np.testing.assert_allclose(lr_t[0].numpy(), place(np.take(lr, s, axis=axis)), atol=1e-5)
        assert not np.allclose(lr_t.numpy(), hr_t.numpy(), atol=1e-3)  # the LR is really degraded


def test_sr_pair_dataset_geometric_augmentation(data_dir):
    path = data_dir / "sub1.nii.gz"
    plain = SRPairDataset([path], CANVAS, SCALE, random_crop=False)
    geo = Augment(flips=True, transpose=True, gamma=0.0, bias_field=0.0, noise=0.0, p_intensity=0.0)
    aug = SRPairDataset([path], CANVAS, SCALE, random_crop=False, augment=geo, seed=5)
    used = set()
    state = random.getstate()
    try:
        random.seed(11)
        for i in range(0, len(plain), max(1, len(plain) // 12)):
            lr0, hr0 = (t[0].numpy() for t in plain[i])
            lr1, hr1 = (t[0].numpy() for t in aug[i])
            hr_options, lr_options = dihedral(hr0), dihedral(lr0)
            matches = [j for j, h in enumerate(hr_options) if np.array_equal(h, hr1)]
            assert matches, f"sample {i}: augmented HR is no flip/transpose of the plain HR"
            assert any(np.array_equal(lr_options[j], lr1) for j in matches), f"sample {i}: LR transformed differently"
            used.update(matches)
    finally:
        random.setstate(state)
    assert len(used) > 2  # several different transforms were drawn


def test_foreground_crops_on_a_small_canvas(data_dir):
    """Random crops smaller than the slice land on the head, not in the air around it."""
    from transmrsr.data.datasets import _foreground_crop_offsets

    img = np.zeros((96, 96), dtype=np.float32)
    img[60:90, 60:90] = 1.0  # a small bright object in one corner
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(50):
        y, x = _foreground_crop_offsets(img, 24, rng, background=0.05)
        hits.append(float((img[y : y + 24, x : x + 24] > 0.05).mean()) >= 0.3)
    assert np.mean(hits) > 0.5  # uniform crops would hit it about 15 % of the time
    assert _foreground_crop_offsets(img[:20, :20], 24, rng, 0.05) == (0, 0)  # fits: nothing to crop


def test_training_canvas_option_trims_the_preset():
    """--img-size gives the preset's network on a smaller canvas: finest levels kept, coarsest dropped."""
    small = TransMRSRConfig.from_preset("small")
    c = SRTrainConfig(preset="small", img_size=64).model_config()
    assert c.img_size == 64 and c.num_enc_levels == 4 and c.num_dec_layers == 5
    assert c.enc_dims == small.enc_dims[:4] and c.dec_channels == small.dec_channels[-5:]
    assert c.disc_channels == small.disc_channels[:5] and c.shallow_dim == small.shallow_dim
    assert SRTrainConfig(preset="small").model_config() == small
    with pytest.raises(ConfigError, match="larger"):
        TransMRSRConfig.from_preset("tiny", img_size=64)


def test_stage1_resume_keeps_the_position_table_the_run_started_with(data_dir, tmp_path):
    """A stage-1 run begun before the position_table field existed (its config.json lacks the field, its state
    does not record it) is resumed on the "legacy" table it was trained with, not on today's default, and the
    resumed state records the table."""
    out = tmp_path / "old"
    assert cli(*gan_args(data_dir, out, 2)) == 0
    cfg_path = out / "config.json"
    raw = json.loads(cfg_path.read_text())
    assert raw["position_table"] == "styleswin"
    del raw["position_table"]  # as the first releases wrote it
    cfg_path.write_text(json.dumps(raw))
    state = torch.load(out / "training_state.pt", weights_only=True)
    del state["position_table"]
    torch.save(state, out / "training_state.pt")
    assert cli(*gan_args(data_dir, out, 3, "--resume")) == 0
    assert StyleSwinGenerator.from_pretrained(out).config.position_table == "legacy"
    assert json.loads(cfg_path.read_text())["position_table"] == "legacy"
    assert load_state(out)["position_table"] == "legacy" and load_state(out)["step"] == 3
