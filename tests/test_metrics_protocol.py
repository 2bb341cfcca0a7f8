"""The two metric protocols of ``transmrsr evaluate`` (issue 22).

* ``ours``: float volumes; the per-slice columns are named for what they are ("per-slice float");
* ``authors``: the protocol of the authors' code behind the paper's tables: 8-bit slices centred
  on a zero-padded 256² canvas, PSNR with peak 255 over the canvas, their SSIM (BasicSR's
  ``_ssim``: 11x11 Gaussian window, sigma 1.5, valid region, C1 = (0.01·255)², C2 = (0.03·255)²).

Expected values are computed here from the definitions (numpy / scipy), not by the code under test.
"""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest

from transmrsr.cli import main
from transmrsr.evaluation import AuthorsScores, MethodScores, evaluate, evaluate_authors, format_table
from transmrsr.evaluation.metrics import authors_canvas, authors_psnr, authors_slice_metrics, authors_ssim


def basicsr_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """BasicSR's ``_ssim`` written from its definition: ``filter2D`` with the outer product of
    ``getGaussianKernel(11, 1.5)``, cropped ``[5:-5, 5:-5]`` == a 'valid' 2-D correlation."""
    from scipy.signal import correlate2d

    k = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    k /= k.sum()
    w = np.outer(k, k)

    def f(x):
        return correlate2d(x, w, mode="valid")

    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    m1, m2 = f(a), f(b)
    s1, s2, s12 = f(a * a) - m1**2, f(b * b) - m2**2, f(a * b) - m1 * m2
    return float((((2 * m1 * m2 + c1) * (2 * s12 + c2)) / ((m1**2 + m2**2 + c1) * (s1 + s2 + c2))).mean())


def test_authors_ssim_is_basicsr_and_skimage_gaussian():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    ref = np.clip(rng.normal(120, 40, (40, 52)), 0, 255).round()
    test = np.clip(ref + rng.normal(0, 12, ref.shape), 0, 255)
    ours = authors_ssim(test, ref)
    assert math.isclose(ours, basicsr_ssim(test, ref), abs_tol=1e-10)
    sk = structural_similarity(ref, test, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert math.isclose(ours, sk, abs_tol=1e-7)
    assert authors_ssim(ref, ref) == pytest.approx(1.0)


@pytest.mark.parametrize("shape, top_left", [((182, 218), (37, 19)), ((181, 218), (38, 19)), ((256, 256), (0, 0))])
def test_authors_canvas_places_the_slice_as_their_crop(shape, top_left):
    img = np.ones(shape)
    canvas = authors_canvas(img)
    assert canvas.shape == (256, 256)
    rows, cols = np.nonzero(canvas)
    assert (rows.min(), cols.min()) == top_left and canvas.sum() == img.size


def test_authors_canvas_centre_crops_a_larger_slice():
    img = np.arange(300 * 200, dtype=float).reshape(300, 200)
    canvas = authors_canvas(img)
    assert canvas.shape == (256, 256)
    np.testing.assert_array_equal(canvas[:, 28:228], img[22:278, :])  # rows centre-cropped, columns centred
    assert not canvas[:, :28].any() and not canvas[:, 228:].any()


def test_authors_psnr_counts_the_whole_padded_canvas():
    ref = np.zeros((256, 256))
    ref[40:200, 50:210] = 100.0
    test = ref.copy()
    test[60:70, 60:70] += 2.0  # 100 pixels off by 2
    expected = 10 * math.log10(255**2 / (4 * 100 / 256**2))
    assert authors_psnr(test, ref) == pytest.approx(expected)
    assert authors_psnr(ref, ref) == 0.0  # their convention for MSE 0 (then left out of the mean)


def test_authors_slice_metrics_on_a_volume():
    """8-bit by the reference's range (reference rounded, test not), empty reference slices left
    out, slices with MSE 0 left out of the PSNR mean but not of the SSIM mean."""
    rng = np.random.default_rng(1)
    ref = np.zeros((30, 20, 6))
    ref[5:25, 4:16, 1:5] = rng.uniform(10, 50, (20, 12, 4))  # slices 0 and 5 along axis 2 are empty
    ref[0, 0, 1] = 60.0  # the reference's range: 0 .. 60 -> 0 .. 255
    test = ref.copy()
    test[5:25, 4:16, 2] += 3.0  # slice 2 off by 3 (= 12.75 in 8-bit units)
    test[5:25, 4:16, 3] -= 1.5
    p, s, n = authors_slice_metrics(test, ref, axis=2)
    assert n == 4

    scale = 255 / 60
    ref8 = np.round(ref * scale)
    psnrs, ssims = [], []
    for k in (1, 2, 3, 4):
        a = np.clip(authors_canvas(test[:, :, k] * scale) + 0.5, 0, 255)
        b = np.clip(authors_canvas(ref8[:, :, k]) + 0.5, 0, 255)
        mse = np.mean((a - b) ** 2)
        if mse > 0:
            psnrs.append(10 * math.log10(255**2 / mse))
        ssims.append(basicsr_ssim(a, b))
    # slices 1 and 4: the test is the unrounded reference, so only the 8-bit rounding differs
    assert len(psnrs) == 4
    assert p == pytest.approx(np.mean(psnrs)) and s == pytest.approx(np.mean(ssims))
    # against an exactly 8-bit test volume, the untouched slices have MSE 0 and leave the PSNR mean
    test8 = np.round(ref * scale) / scale
    test8[:, :, 2] += 1.0
    p2, s2, n2 = authors_slice_metrics(test8, ref, axis=2)
    a = np.clip(authors_canvas(test8[:, :, 2] * scale) + 0.5, 0, 255)
    b = np.clip(authors_canvas(ref8[:, :, 2]) + 0.5, 0, 255)
    assert n2 == 4 and p2 == pytest.approx(10 * math.log10(255**2 / np.mean((a - b) ** 2)))
    assert s2 < 1.0


def _volumes():
    rng = np.random.default_rng(2)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in (24, 28, 16)], indexing="ij")
    hr = ((x**2 + y**2 + z**2) < 0.8) * (80 + 30 * np.sin(5 * x) * np.cos(4 * y)) + rng.normal(0, 1, x.shape)
    sr = hr + rng.normal(0, 3, hr.shape)
    return hr.astype(np.float32), sr.astype(np.float32)


def test_evaluate_tables_name_the_protocols():
    from transmrsr.data import simulate_thick

    hr, sr = _volumes()
    lr = simulate_thick(hr, 2, 4)
    ours = evaluate(sr, hr, lr, axis=2, factor=4)
    assert isinstance(ours[0], MethodScores)
    d = ours[0].as_dict()
    assert d["psnr_slice"] == ours[0].psnr_slice == ours[0].psnr_2d == d["psnr_2d"]
    table = format_table(ours)
    assert "PSNR per-slice float" in table and "2-D" not in table
    authors = evaluate_authors(sr, hr, lr, axis=2, factor=4)
    assert [r.name for r in authors] == ["TransMRSR", "cubic", "trilinear"]
    assert all(isinstance(r, AuthorsScores) and r.slices == hr.shape[1] and r.canvas == 256 for r in authors)
    assert "8-bit, 256² zero-padded, peak 255" in format_table(authors)
    # the padding counts in the authors' mean: their PSNR is well above the per-slice float one
    assert authors[0].psnr > ours[0].psnr_slice + 5


def test_cli_evaluate_protocol_authors(tmp_path, capsys):
    hr, sr = _volumes()
    for name, vol in (("hr", hr), ("sr", sr)):
        nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / f"{name}.nii.gz")
    args = [str(tmp_path / "sr.nii.gz"), str(tmp_path / "hr.nii.gz"), "--scale", "4", "--axis", "2"]
    assert main(["evaluate", *args, "--protocol", "authors", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["protocol"] == "authors" and out["rows"][0]["method"] == "TransMRSR"
    expected = authors_slice_metrics(sr, hr, axis=1)  # the default slice axis for a thick z
    assert out["rows"][0]["psnr_authors"] == pytest.approx(expected[0])
    assert out["rows"][0]["ssim_authors"] == pytest.approx(expected[1])
    assert main(["evaluate", *args, "--protocol", "authors", "--slice-axis", "0"]) == 0
    assert "SSIM (authors)" in capsys.readouterr().out
    assert main(["evaluate", *args, "--protocol", "authors", "--dice"]) == 2
    assert "--protocol ours" in capsys.readouterr().err
