"""The public training set (prepare-public), the fixed split, and the training / inference rules
that must agree: stage 1 keeps every volume, slices sit in the canvas centre in both, the
intensity scaler is fitted on the thick volume in both, and the realistic acquisitions."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from transmrsr import TransMRSR, TransMRSRConfig
from transmrsr.cli import main
from transmrsr.data import IntensityScaler, simulate_thick
from transmrsr.data.datasets import Acquisition, SRPairDataset, _place, quantise
from transmrsr.data.degradation import SliceProfile, simulate_acquisition
from transmrsr.data.public import PUBLIC_SOURCES
from transmrsr.inference import _run_plane

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _head(shape: tuple[int, int, int], skull: bool, seed: int) -> np.ndarray:
    """A synthetic head: an ellipsoid 'brain' with texture, and (optionally) a bright shell."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    vol = np.where(r < 0.6, 120 + 40 * np.sin(9 * grid[0]) * np.cos(7 * grid[1]), 0.0)
    if skull:
        vol = np.where((r >= 0.65) & (r < 0.8), 200.0, vol)
    return np.clip(vol + rng.normal(0, 2, shape) * (vol > 0), 0, 255)


@pytest.fixture(scope="module")
def public_src(tmp_path_factory) -> Path:
    """A source folder as a user fetches it: otsu as <id>.nii.gz (uint8, 0.9 mm, LAS), bet by its
    repository path, stroke T1 as <id>.mgz, and one file that is not on the allow-list."""
    src = tmp_path_factory.mktemp("public_src")
    las = np.diag([-0.9, 0.9, 0.9, 1.0])
    nib.save(nib.Nifti1Image(_head((40, 44, 36), True, 0).astype(np.uint8), las), src / "otsu.nii.gz")
    (src / "data").mkdir()
    nib.save(nib.Nifti1Image(_head((30, 34, 28), False, 1).astype(np.uint8), np.eye(4)), src / "data" / "bet.nii.gz")
    nib.save(nib.MGHImage(_head((32, 32, 32), False, 2).astype(np.uint8), np.eye(4)), src / "stroke-t1.mgz")
    nib.save(nib.Nifti1Image(_head((20, 20, 20), True, 3).astype(np.float32), np.eye(4)), src / "reserved.nii.gz")
    return src


def test_prepare_public_writes_the_fixed_split(public_src, tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["prepare-public", str(public_src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped reserved.nii.gz: not on the allow-list" in printed
    manifest = json.loads((out / "sources.json").read_text())
    assert manifest["split"]["val"] == ["otsu", "bet"] and manifest["split"]["train"] == ["stroke-t1"]
    by = {v["name"]: v for v in manifest["volumes"]}
    assert set(by) == {"otsu", "bet", "stroke-t1"}
    assert by["otsu"]["licence"] == "BSD-2-Clause" and by["otsu"]["skull"] is True and "brain_mask" not in by["otsu"]
    assert by["bet"]["brain_mask"] == by["bet"]["head_mask"]  # skull-stripped: brain = head
    assert by["otsu"]["bit_depth"] == 8 and by["otsu"]["source_dtype"] == "uint8"
    img = nib.load(out / "val" / "otsu.nii.gz")
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    np.testing.assert_allclose(img.header.get_zooms(), (1.0, 1.0, 1.0), atol=1e-6)  # 0.9 mm resampled to 1 mm
    mask = np.asarray(nib.load(out / by["otsu"]["head_mask"]).dataobj)
    data = np.asarray(img.dataobj)
    assert mask.shape == data.shape and 0.2 < mask.mean() < 0.95
    assert data[mask > 0].mean() > 5 * max(data[mask == 0].mean(), 1e-3)
    # every voxel keeps its world position through reorientation, resampling and cropping
    src_img = nib.load(public_src / "otsu.nii.gz")
    centre_world = src_img.affine @ np.array([*(np.array(src_img.shape) - 1) / 2, 1])
    ijk = np.linalg.solve(img.affine, centre_world)[:3]
    assert np.all(ijk > 0) and np.all(ijk < np.array(data.shape) - 1)


def test_prepare_public_list_and_allow_list_roles(capsys):
    assert main(["prepare-public", "--list"]) == 0
    printed = capsys.readouterr().out
    assert all(s.id in printed for s in PUBLIC_SOURCES)
    roles = {s.id: s.role for s in PUBLIC_SOURCES}
    val = [s for s in PUBLIC_SOURCES if s.role == "val"]
    assert {s.skull for s in val} == {True, False}  # one head with skull, one skull-stripped
    assert all(s.contrast == "T1w" for s in PUBLIC_SOURCES if s.role in ("train", "val"))
    assert roles["stroke-t2"] == "extra"


def test_prepare_public_refuses_an_empty_folder(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    assert main(["prepare-public", str(tmp_path / "src"), "--out", str(tmp_path / "out")]) == 2
    assert "none of the allow-listed volumes" in capsys.readouterr().err


def test_stage1_trains_on_every_volume(public_src, tmp_path):
    """train-gan used to drop val_fraction (0.2) of the volumes silently: with two volumes, one."""
    data = tmp_path / "d"
    data.mkdir()
    for i in range(2):
        nib.save(nib.Nifti1Image(_head((24, 24, 24), True, i).astype(np.float32), np.eye(4)), data / f"s{i}.nii.gz")
    out = tmp_path / "gan"
    rc = main(
        [
            "train-gan",
            "--data",
            str(data),
            "--out",
            str(out),
            "--preset",
            "tiny",
            "--batch-size",
            "2",
            "--max-steps",
            "1",
            "--checkpoint-every",
            "1000",
            "--sample-every",
            "0",
        ]
    )
    assert rc == 0
    start = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert start["train_volumes"] == ["s0.nii.gz", "s1.nii.gz"] and start["held_out_volumes"] == []


def test_inference_centres_small_slices_on_the_canvas_like_training():
    """A slice smaller than the canvas enters the network exactly as training placed it."""
    cfg = TransMRSRConfig.from_preset("tiny")
    model = TransMRSR(cfg).eval()
    seen = []
    model.forward = lambda x, phi=None: (seen.append(x.clone()), x)[1]
    vol = np.random.default_rng(0).random((3, 20, 26)).astype(np.float32) + 0.5
    out, _, tiled = _run_plane(model, vol, 0, None, 8, torch.device("cpu"), None, 0.01, lambda n: None)
    assert not tiled
    batch = torch.cat(seen).numpy()
    for i in range(3):
        np.testing.assert_array_equal(batch[i, 0], _place(vol[i], cfg.img_size, (0, 0)))
    np.testing.assert_array_equal(out, vol)  # and the output is read back from the same pixels


def test_training_acquisitions_with_gaps():
    """The gap variants of training are the degradation module's slab: a 2-slice slab every 4."""
    x = np.random.default_rng(1).random((4, 5, 23)).astype(np.float32)
    np.testing.assert_allclose(
        simulate_acquisition(x, 2, SliceProfile(4.0, None, "box")), simulate_thick(x, 2, 4, "box"), atol=1e-6
    )
    gap = simulate_acquisition(x, 2, SliceProfile(4.0, 2.0, "box"))
    np.testing.assert_allclose(gap[:, :, 1], x[:, :, 5:7].mean(axis=2), atol=1e-6)


def test_quantise_levels():
    x = np.linspace(0, 1, 10000, dtype=np.float32)
    assert np.unique(quantise(x, 8)).size == 256
    assert np.unique(quantise(x, 12)).size == 4096


def test_realistic_acquisitions_vary_and_keep_each_variant_on_its_own_scale(tmp_path):
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(_head((28, 30, 32), True, 5).astype(np.float32), np.eye(4)), path)
    acq = Acquisition(variants=6, profiles=("box", "gaussian"), p_gap=0.5, p_quantise=0.5)
    ds = SRPairDataset([path], 32, 4, random_crop=False, acquisition=acq, seed=3)
    drawn = ds.variants[0]
    assert len(drawn) == 6 and {p for p, _, _ in drawn} == {"box", "gaussian"}
    assert any(f < 1 for _, f, _ in drawn) and any(b is not None for _, _, b in drawn)
    raw = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    lrs, hr_first = ds.pairs[0]
    for (_lr, gain, offset), (prof, fraction, _bits) in zip(lrs, drawn):
        scaler = IntensityScaler.fit(simulate_acquisition(raw, 2, SliceProfile(4.0, fraction * 4, prof)))
        # the variant's HR target is the HR on that variant's own scale (the inference rule)
        np.testing.assert_allclose(hr_first * gain + offset, scaler.forward(raw), atol=1e-4)
