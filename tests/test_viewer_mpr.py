"""transmrsr.mpr: what the app's viewer draws, without a browser: orientation from the affine
(any voxel order), lossless slice encoding, the payload's slices and the one-call overlay API."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from transmrsr.mpr import (
    AbsDiffSource,
    Orientation,
    Scene,
    decode_slice,
    encode_slice,
    window_presets,
)

SHAPE = (20, 24, 16)


def phantom() -> tuple[np.ndarray, np.ndarray]:
    """A RAS+ volume ``(20, 24, 16)`` of 1 mm voxels and the world position (mm) of its marker:
    the patient's right, anterior, superior corner region."""
    vol = np.zeros(SHAPE, np.float32)
    vol[2:18, 2:22, 2:14] = 100.0
    vol[14:17, 16:20, 10:13] = 300.0  # right (high x), anterior (high y), superior (high z)
    return vol, np.diag([1.0, 1.0, 1.0, 1.0])


def reoriented(vol: np.ndarray, affine: np.ndarray, codes: str) -> tuple[np.ndarray, np.ndarray]:
    """The same anatomy stored in another voxel order (nibabel's axcodes, e.g. ``"LAS"``, ``"PIL"``)."""
    img = nib.Nifti1Image(vol, affine)
    target = nib.orientations.axcodes2ornt(codes)
    xform = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine), target)
    out = img.as_reoriented(xform)
    assert nib.aff2axcodes(out.affine) == tuple(codes)
    return np.asarray(out.dataobj), out.affine


def marker_side(img: np.ndarray) -> tuple[float, float]:
    """(column, row) centroid of the marker (value 300) in a displayed slice, as fractions of its size."""
    rows, cols = np.nonzero(img > 200)
    return cols.mean() / img.shape[1], rows.mean() / img.shape[0]


@pytest.mark.parametrize("codes", ["RAS", "LAS", "LPS", "PIL", "SAR"])
def test_every_voxel_order_is_shown_the_same_way_with_labels_from_the_affine(codes):
    ras, affine = phantom()
    vol, aff = reoriented(ras, affine, codes)
    o = Orientation(aff, vol.shape)
    ref = Orientation(affine, ras.shape)
    expected = {
        "axial": dict(left="R", right="L", top="A", bottom="P"),
        "coronal": dict(left="R", right="L", top="S", bottom="I"),
        "sagittal": dict(left="A", right="P", top="S", bottom="I"),
    }
    marker_voxel = np.round(np.linalg.inv(aff) @ [15, 17, 11, 1])[:3].astype(int)  # world (15, 17, 11) mm
    for plane, labels in expected.items():
        assert o.planes[plane].labels == labels, (codes, plane)
        spec = o.planes[plane]
        shown = o.display(np.take(vol, marker_voxel[spec.axis], axis=spec.axis), plane)
        ref_spec = ref.planes[plane]
        # pixel for pixel the picture of the RAS file, whatever the voxel order on disk
        assert np.array_equal(shown, ref.display(np.take(ras, [15, 17, 11][ref_spec.axis], axis=ref_spec.axis), plane))
        x, y = marker_side(shown)
        if plane in ("axial", "coronal"):
            assert x < 0.5, f"{codes} {plane}: the patient's right must be on the screen's left"
        else:
            assert x < 0.5, f"{codes} sagittal: anterior must be on the left"
        assert y < 0.5, f"{codes} {plane}: anterior / superior must be at the top"
        # a click on the marker's pixel finds the marker's voxel again, and back
        row, col = o.voxel_to_screen(plane, tuple(marker_voxel))
        assert o.screen_to_voxel(plane, marker_voxel[spec.axis], row, col) == tuple(marker_voxel)
        assert shown[row, col] == 300.0


def test_slices_travel_losslessly_for_the_display():
    rng = np.random.default_rng(0)
    img = (rng.random((37, 41)) * 1234.5 - 17).astype(np.float32)
    img[3, 4] = np.nan
    enc = encode_slice(img)
    back = decode_slice(enc, img.shape)
    span = enc["hi"] - enc["lo"]
    ok = np.isfinite(img)
    assert np.max(np.abs(back[ok] - img[ok])) <= span / 65535 / 2 + 1e-9  # half a 16-bit step
    assert back[3, 4] == enc["lo"]
    # every grey level of any window wider than 1/256 of the range is the float32 one (or its neighbour at a tie)
    lo, hi = enc["lo"] + 0.3 * span, enc["lo"] + 0.31 * span

    def grey(x):
        return np.floor(np.clip((x - lo) / (hi - lo), 0, 1) * 255)

    assert np.max(np.abs(grey(back[ok]) - grey(img[ok]))) <= 1
    assert np.array_equal(decode_slice(encode_slice(np.full((3, 3), 5.0)), (3, 3)), np.full((3, 3), 5.0))


def test_payload_sends_only_the_planes_a_move_changes_and_overlays_in_one_call():
    vol, affine = phantom()
    hr = vol + 1.0
    scene = Scene(affine=affine, shape=vol.shape, windows=window_presets(hr))
    scene.add_volume("sr", "SR", vol)
    scene.add_volume("hr", "HR", hr)
    err = scene.add_volume(
        "error",
        "|SR − HR|",
        AbsDiffSource(scene.layers[0].source, scene.layers[1].source),
        kind="map",
        cmap="inferno",
        vmin=0,
        vmax=2,
    ).source
    scene.add_overlay("error-overlay", err, vmin=0, vmax=2, label="|SR − HR|")
    trust = np.linspace(0, 1, vol.size, dtype=np.float32).reshape(vol.shape)
    scene.add_overlay("uncertainty", trust, cmap="viridis", unit="σ")  # a trust map: one call
    first = scene.payload((10, 12, 8), plane="coronal")
    assert set(first["slices"]) == {"sr", "hr", "error", "uncertainty"}  # the error overlay reuses the panel's slices
    assert [o["ref"] for o in first["overlays"]] == ["error", "uncertainty"]
    assert set(first["luts"]) == {"inferno", "viridis"} and first["plane"] == "coronal"
    assert first["overlays"][1]["vmax"] == pytest.approx(np.percentile(trust, 99.5), rel=1e-4)
    spec = scene.orientation.planes["axial"]
    shown = decode_slice(first["slices"]["uncertainty"]["axial"], (spec.shape[0], spec.shape[1]))
    np.testing.assert_allclose(shown, scene.orientation.display(trust[:, :, 8], "axial"), atol=1e-5)
    have = {k: {p: e["tag"] for p, e in planes.items()} for k, planes in first["slices"].items()}
    moved = scene.payload((10, 12, 3), have=have)  # the wheel on the axial plane: only axial slices change
    for key, planes in moved["slices"].items():
        assert "q" in planes["axial"] and "q" not in planes["coronal"] and "q" not in planes["sagittal"], key
    with pytest.raises(ValueError, match="grid"):
        scene.add_overlay("wrong", np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="already"):
        scene.add_overlay("uncertainty", trust)
