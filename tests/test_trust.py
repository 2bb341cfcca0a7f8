"""The trust layer (issue #18): data consistency, uncertainty, out-of-range input warnings, and the
``sr --consistency / --uncertainty`` flags, on real MRI (the ICBM152 T1 that nilearn ships)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import T1

from transmrsr import TransMRSR
from transmrsr.cli import main
from transmrsr.data.degradation import simulate_acquisition, simulate_thick
from transmrsr.inference import super_resolve_acquisition
from transmrsr.trust import (
    T1_CENTRE_MIN,
    consistency_map,
    degrade,
    geometry_weighted,
    input_range_warnings,
    simple_acquisition,
    slice_distance,
    super_resolve_with_trust,
    trust_for_result,
    uncertainty_map,
    uncertainty_runs,
)


@pytest.fixture(scope="module")
def t1() -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(T1))
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


@pytest.fixture(scope="module")
def hr_block(t1_crop) -> np.ndarray:
    return np.asarray(nib.load(str(t1_crop)).dataobj, dtype=np.float32)  # 48 x 56 x 44, real T1


# ------------------------------------------------------------------ consistency


@pytest.mark.parametrize("factor", [4, 8])
def test_hr_is_consistent_with_its_own_scan(hr_block, factor):
    lr = simulate_thick(hr_block, 2, factor)
    acq = simple_acquisition(2, factor, n_thin=hr_block.shape[2])
    lr_map, sr_map, summary = consistency_map(hr_block, lr, acq)
    assert lr_map.shape == lr.shape and sr_map.shape == hr_block.shape
    assert lr_map.dtype == np.float32 and sr_map.dtype == np.float32
    assert summary.relative < 1e-5 and float(lr_map.max()) < 1e-3 * float(hr_block.max())
    assert summary.foreground_voxels > 0.3 * lr.size


def test_gap_and_gaussian_profile_are_the_acquisition_model(hr_block):
    # 3 mm slices every 5 mm (a gap), Gaussian profile: the scan made with that model is consistent
    acq = simple_acquisition(2, 5, thickness=3, profile="gaussian", n_thin=hr_block.shape[2])
    lr = simulate_acquisition(hr_block, 2, acq.slice_profile())
    assert np.allclose(degrade(hr_block, lr.shape, acq), lr, atol=1e-3)
    assert consistency_map(hr_block, lr, acq)[2].relative < 1e-5
    # ...while assuming a box without gap for it is not
    wrong = simple_acquisition(2, 5, n_thin=hr_block.shape[2])
    assert consistency_map(hr_block, lr, wrong)[2].relative > 0.005


def test_invented_structure_shows_in_its_slabs(hr_block):
    r = 4
    lr = simulate_thick(hr_block, 2, r)
    acq = simple_acquisition(2, r, n_thin=hr_block.shape[2])
    span = float(np.percentile(hr_block, 99.5) - hr_block.min())
    fake = hr_block.copy()
    fake[20:28, 24:32, 16:24] += 0.3 * span  # an 8 mm "lesion" over two whole slabs (thin slices 16-23)
    lr_map, sr_map, summary = consistency_map(fake, lr, acq)
    assert summary.relative > 1e-3  # diluted over the volume (256 of ~28,500 voxels): the map localises it
    assert np.allclose(lr_map[20:28, 24:32, 4:6], 0.3 * span, rtol=1e-3)  # thick slices 4 and 5
    assert float(lr_map[:, :, :4].max()) < 1e-3 * span and float(lr_map[:5].max()) < 1e-3 * span
    # spread back over the slab each thick slice measured: constant across the slab's 4 thin slices
    assert np.allclose(sr_map[20:28, 24:32, 16:24], 0.3 * span, rtol=1e-3)
    assert float(sr_map[:, :, :16].max()) < 1e-3 * span
    # the documented blind spot: a change that averages to zero within each slab is invisible
    balanced = hr_block.copy()
    balanced[20:28, 24:32, 16:24] += 0.3 * span * np.array([1, -1, 1, -1] * 2, dtype=np.float32)
    assert consistency_map(balanced, lr, acq)[2].relative < 1e-5


def test_consistency_refuses_a_foreign_grid(hr_block):
    lr = simulate_thick(hr_block, 2, 4)
    with pytest.raises(ValueError, match="output grid"):
        consistency_map(hr_block[:, :, :40], lr, simple_acquisition(2, 4, n_thin=44))


# ------------------------------------------------------------------ uncertainty


def test_uncertainty_map_is_the_spread_of_the_runs(hr_block):
    a, b = hr_block, hr_block + 10.0 * (np.arange(hr_block.shape[0]) % 2)[:, None, None]
    u = uncertainty_map([a, b], smoothing=0)
    assert u.shape == a.shape and u.dtype == np.float32
    assert np.allclose(u, np.abs(a - b) / 2)
    assert np.allclose(uncertainty_map([a, a, a]), 0.0)
    with pytest.raises(ValueError, match="two runs"):
        uncertainty_map([a])


def test_slice_distance_follows_the_acquisition():
    # x4 box: thin voxels 0-3 lie 1.5, 0.5, 0.5, 1.5 voxels from their slice's centre (1.5): in spacings /4
    d = slice_distance(simple_acquisition(2, 4, n_thin=16), 16, 4)
    assert d.dtype == np.float32 and d.shape == (16,)
    assert np.allclose(d, np.tile([0.375, 0.125, 0.125, 0.375], 4))
    # 3 mm slices every 5 mm (a gap): centres every 5 voxels at 2, 7, 12...; the gap is as far as it gets
    d = slice_distance(simple_acquisition(2, 5, thickness=3, n_thin=20), 20, 4)
    assert np.allclose(d, np.tile([0.4, 0.2, 0.0, 0.2, 0.4], 4))
    # non-integer factor: 0 only on a centre, never beyond half a spacing
    d = slice_distance(simple_acquisition(2, 3.3, n_thin=33), 33, 10)
    assert float(d.min()) < 0.1 and float(d.max()) <= 0.5 + 1e-6


def test_geometry_weighting_is_the_documented_formula(hr_block):
    acq = simple_acquisition(2, 4, n_thin=hr_block.shape[2])
    lr_shape = simulate_thick(hr_block, 2, 4).shape
    spread = np.full(hr_block.shape, 4.0, dtype=np.float32)
    u = geometry_weighted(spread, hr_block, acq, lr_shape, smoothing=0)
    grad = np.abs(np.gradient(hr_block, axis=2))
    d = slice_distance(acq, hr_block.shape[2], lr_shape[2])[None, None, :]
    assert u.shape == hr_block.shape and u.dtype == np.float32
    assert np.allclose(u, np.sqrt(4.0 * grad) * (1 + d), rtol=1e-5, atol=1e-5)
    # runs that agree, or an SR flat along the thick axis, give nothing to distrust
    assert np.allclose(geometry_weighted(np.zeros_like(spread), hr_block, acq, lr_shape, 1.0), 0.0)
    flat = np.repeat(hr_block[:, :, :1], hr_block.shape[2], axis=2)
    assert np.allclose(geometry_weighted(spread, flat, acq, lr_shape, 1.0), 0.0)
    # on a straight ramp along the thick axis the slab borders weigh more than the slab centres
    ramp = np.broadcast_to(np.arange(hr_block.shape[2], dtype=np.float32), hr_block.shape)
    u = geometry_weighted(spread, ramp, acq, lr_shape, 0)
    assert np.allclose(u[:, :, 4] / u[:, :, 5], 1.375 / 1.125)


def test_sr_with_trust_keeps_the_sr(tiny_dir, hr_block, one_torch_thread):
    model = TransMRSR.from_pretrained(tiny_dir).eval()
    lr = simulate_thick(hr_block, 2, 4)
    acq = simple_acquisition(2, 4, n_thin=hr_block.shape[2])
    kw = dict(served=(4,), device="cpu", show_progress=False)
    plain = super_resolve_acquisition(lambda m: model, lr, acq, fusion=True, **kw)
    res, maps = super_resolve_with_trust(lambda m: model, lr, acq, uncertainty="planes", affine=np.eye(4), **kw)
    assert np.array_equal(res.sr, plain.sr)  # the trust layer does not change the SR
    assert len(res.planes) == 2
    # the SR is their mean (up to the clipping at the volume's minimum, made per plane here)
    assert np.median(np.abs(np.mean(res.planes, axis=0) - res.sr)) < 1e-3 * float(res.sr.max())
    assert maps.method == "planes" and maps.extra_runs == 0 and maps.warnings == []
    assert maps.weighting == "geometry"  # the default
    assert maps.uncertainty.shape == res.sr.shape and float(maps.uncertainty.max()) > 0  # the planes disagree
    # the default map is the planes' spread weighted by the geometry; "none" is the spread itself
    spread = uncertainty_map(res.planes)
    assert np.allclose(maps.uncertainty, geometry_weighted(spread, res.sr, acq, lr.shape, 1.0), atol=1e-5)
    raw = trust_for_result(res, lr, None, uncertainty="planes", weighting="none")
    assert raw.weighting == "none" and np.array_equal(raw.uncertainty, spread)
    with pytest.raises(ValueError, match="unknown uncertainty weighting"):
        trust_for_result(res, lr, None, uncertainty="planes", weighting="edges")
    assert maps.consistency_sr.shape == res.sr.shape and maps.consistency_lr.shape == lr.shape
    # the tiny model is no SR model, but its SR does stay closer to the scan than an SR made up
    assert maps.consistency.relative < consistency_map(np.roll(res.sr, 3, axis=0), lr, acq)[2].relative


def test_every_uncertainty_method(tiny_dir, hr_block, one_torch_thread):
    model = TransMRSR.from_pretrained(tiny_dir).eval()
    block = hr_block[8:40, 12:44]  # 32 x 32 x 44: four extra runs stay cheap
    lr = simulate_thick(block, 2, 4)
    acq = simple_acquisition(2, 4, n_thin=block.shape[2])
    kw = dict(served=(4,), device="cpu", show_progress=False, fusion=True, keep_planes=True)
    base = super_resolve_acquisition(lambda m: model, lr, acq, **kw)
    calls: list[tuple] = []

    def rerun(vol, overrides):
        calls.append((bool(np.array_equal(vol, lr)), tuple(sorted(overrides.items()))))
        return super_resolve_acquisition(lambda m: model, vol, acq, **{**kw, **overrides})

    for method, extra, members in (("planes", 0, 2), ("flips", 1, 2), ("planes+flips", 1, 4), ("phi", 2, 3)):
        calls.clear()
        runs, n = uncertainty_runs(method, base, rerun, lr)
        assert (n, len(runs), len(calls)) == (extra, members, extra)
        assert all(r.shape == base.sr.shape for r in runs)
        assert float(uncertainty_map(runs).max()) > 0
    assert calls == [(True, (("phi", 0.0),)), (True, (("phi", 1.0),))]
    # a mirrored run, mirrored back, is aligned with the SR: it agrees far better than unaligned
    flipped = uncertainty_runs("flips", base, rerun, lr)[0][1]
    assert np.abs(flipped - base.sr).mean() < 0.5 * np.abs(flipped[::-1] - base.sr).mean()
    with pytest.raises(ValueError, match="unknown uncertainty"):
        uncertainty_runs("dropout", base, rerun, lr)


def test_planes_need_fusion(tiny_dir, hr_block):
    model = TransMRSR.from_pretrained(tiny_dir).eval()
    lr = simulate_thick(hr_block, 2, 4)
    with pytest.raises(ValueError, match="fus"):
        super_resolve_with_trust(
            lambda m: model,
            lr,
            simple_acquisition(2, 4),
            uncertainty="planes",
            served=(4,),
            fusion=False,
            show_progress=False,
        )


# ------------------------------------------------------------------ out-of-range input


def test_a_t1_head_raises_no_warning(t1):
    data, affine = t1
    assert input_range_warnings(data, affine) == []
    thick = simulate_thick(data, 2, 4)  # the same head as a 4 mm axial scan
    aff = affine.copy()
    aff[:3, 2] *= 4
    assert input_range_warnings(thick, aff, axis=2) == []


def test_t2_like_contrast_is_flagged(t1):
    from transmrsr.evaluation.metrics import foreground_mask

    data, affine = t1
    head = foreground_mask(data)
    t2_like = np.where(head, data.max() - data, 0).astype(np.float32)  # bright CSF, dark white matter
    found = input_range_warnings(t2_like, affine)
    assert len(found) == 1 and "T1" in found[0] and "Adapting to this scan" in found[0]
    assert input_range_warnings(t2_like, affine, contrast=False) == []  # e.g. a user's own T2 model


@pytest.mark.parametrize(
    "scale, words",
    [((10.0, 10.0, 10.0), "far from the 1 mm"), ((0.1, 0.1, 0.4), "far from the 1 mm"), ((3.0, 3.0, 3.0), "spans")],
)
def test_absurd_geometry_is_flagged(t1, scale, words):
    data, _ = t1
    affine = np.diag(list(scale) + [1.0])
    assert any(words in w for w in input_range_warnings(data, affine))


def test_sheared_grid_and_label_maps_are_flagged(t1):
    data, affine = t1
    sheared = affine.copy()
    sheared[0, 1] = 0.5
    assert any("sheared" in w for w in input_range_warnings(data, sheared))
    labels = (data > np.percentile(data, 50)).astype(np.float32) * 3
    assert any("label map" in w for w in input_range_warnings(labels, affine))


def test_contrast_threshold_is_between_t1_and_t2():
    assert 0.32 < T1_CENTRE_MIN < 0.46  # measured, docs/trust.md


# ------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def scan(t1_crop, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trust_cli")
    assert main(["simulate", str(t1_crop), str(root / "lr.nii.gz"), "--scale", "4", "--axis", "2", "--quiet"]) == 0
    return root / "lr.nii.gz"


def test_cli_writes_maps_on_the_right_grids(scan, tiny_dir, tmp_path, one_torch_thread, capsys):
    plain, out = tmp_path / "plain.nii.gz", tmp_path / "sr.nii.gz"
    assert main(["sr", str(scan), str(plain), "--model", str(tiny_dir), "--quiet", "--device", "cpu"]) == 0
    rc = main(
        [
            "sr",
            str(scan),
            str(out),
            "--model",
            str(tiny_dir),
            "--device",
            "cpu",
            "--consistency",
            str(tmp_path / "cons.nii.gz"),
            "--uncertainty",
            str(tmp_path / "unc.nii.gz"),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert (
        "consistency, mean |degrade(SR) - LR|" in text
        and "uncertainty (planes+flips, geometry weighting, 1 extra run" in text
    )
    sr, lr = nib.load(str(out)), nib.load(str(scan))
    # the SR is exactly the one written without the flags
    assert np.array_equal(np.asarray(sr.dataobj), np.asarray(nib.load(str(plain)).dataobj))
    for name in ("cons.nii.gz", "unc.nii.gz"):
        img = nib.load(str(tmp_path / name))
        assert img.shape == sr.shape and np.allclose(img.affine, sr.affine)
        assert np.all(np.asarray(img.dataobj) >= 0)
    side = nib.load(str(tmp_path / "cons_lrgrid.nii.gz"))
    assert side.shape == lr.shape and np.allclose(side.affine, lr.affine)
    assert "consistency" in bytes(side.header["descrip"]).decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cons.nii.gz",
        "cons_lrgrid.nii.gz",
        "plain.nii.gz",
        "sr.nii.gz",
        "unc.nii.gz",
    ]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--uncertainty", "U", "--uncertainty-method", "dropout"], "--uncertainty-method"),
        (["--uncertainty-method", "flips"], "needs --uncertainty"),
        (["--uncertainty", "U", "--uncertainty-weighting", "edges"], "--uncertainty-weighting"),
        (["--uncertainty-weighting", "none"], "needs --uncertainty"),
        (["--uncertainty", "U", "--uncertainty-method", "planes", "--no-fusion"], "--no-fusion"),
        (["--consistency", "OUT"], "named twice"),
        (["--uncertainty", "U.txt"], ".nii"),
    ],
)
def test_cli_refuses_bad_trust_flags(scan, tiny_dir, tmp_path, capsys, extra, words):
    out = tmp_path / "sr.nii.gz"
    subs = {"U": str(tmp_path / "u.nii.gz"), "U.txt": str(tmp_path / "u.txt"), "OUT": str(out)}
    rc = main(["sr", str(scan), str(out), "--model", str(tiny_dir), "--quiet"] + [subs.get(a, a) for a in extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and words in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_cli_warns_about_absurd_geometry(hr_block, tiny_dir, tmp_path, one_torch_thread, capsys):
    lr = simulate_thick(hr_block, 2, 4)
    nib.save(nib.Nifti1Image(lr, np.diag([8.0, 8.0, 32.0, 1.0])), str(tmp_path / "big.nii.gz"))  # mm read as cm
    assert (
        main(
            [
                "sr",
                str(tmp_path / "big.nii.gz"),
                str(tmp_path / "sr.nii.gz"),
                "--model",
                str(tiny_dir),
                "--quiet",
                "--no-fusion",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "warning: big.nii.gz: In-plane voxel sizes 8.00 x 8.00 mm" in err
    assert (tmp_path / "sr.nii.gz").is_file()
