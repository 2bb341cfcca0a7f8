"""The Gradio app: the real server driven through gradio_client, and the studio functions it calls."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from transmrsr import TransMRSR
from transmrsr.studio import CaseOptions, panels, phi_sweep, reader_image, reader_items, run_case

from apphelpers import running_app, viewer_panel

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("work"), tiny_dir) as app:
        yield app.url


def test_super_resolve_endpoint_returns_nifti_on_the_hr_grid(server, t1_crop):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    assert "/super_resolve" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    sr_path, info = client.predict(handle_file(str(t1_crop)), 4, 0.5, api_name="/super_resolve")
    sr, hr = nib.load(sr_path), nib.load(str(t1_crop))
    assert sr.shape == hr.shape
    np.testing.assert_allclose(sr.affine, hr.affine, atol=1e-5)
    assert info["simulated_from_hr"] is True and info["axis"] == 2 and info["scale"] == 4
    assert info["fusion"] is True  # the endpoint runs the default: both planes, averaged
    methods = [m["method"] for m in info["metrics"]]
    assert methods == ["TransMRSR", "cubic"]
    assert all(np.isfinite(m["PSNR (dB)"]) and 0 < m["SSIM"] <= 1 for m in info["metrics"])


def test_bad_upload_is_a_clear_error(server, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not a NIfTI volume")
    client = Client(server, verbose=False)
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(bad)), 4, 0.5, api_name="/super_resolve")
    message = str(err.value)
    assert "broken.nii.gz" in message and "not a readable NIfTI" in message and "Traceback" not in message
    assert not re.search(r"(?<![\w.])/\w", message) and str(tmp_path) not in message, f"a server path in: {message}"


def test_studio_panels_phi_and_sweep(tiny_dir, t1_crop, tmp_path, one_torch_thread):
    model = TransMRSR.from_pretrained(tiny_dir)
    case = run_case(t1_crop, model, tmp_path / "one", CaseOptions(scale=4, phi=0.5, fusion=False))
    assert case.sr_path.is_file() and case.slice_axis == 1 and case.hr is not None and not case.fusion
    p = panels(case, model, "coronal", 20)
    assert p["lr"].shape == p["sr"].shape == p["hr"].shape and p["lr"].ndim == 3
    assert p["error"].ndim == 3 and p["psnr_sr"] is not None
    # the slice on screen at the run's φ equals the volume; at another φ it is recomputed and differs
    same = panels(case, model, "coronal", 20, phi=0.5)["sr"]
    other = panels(case, model, "coronal", 20, phi=0.0)["sr"]
    assert np.array_equal(same, p["sr"]) and not np.array_equal(other, p["sr"])
    gallery = phi_sweep(case, model, "coronal", 20)
    assert [label.split(" ·")[0] for _, label in gallery] == [
        "φ = 0.00",
        "φ = 0.25",
        "φ = 0.50",
        "φ = 0.75",
        "φ = 1.00",
    ]
    assert all("PSNR" in label for _, label in gallery)
    assert np.array_equal(gallery[2][0], same)  # the sweep's φ = 0.5 is the volume's slice
    with pytest.raises(ValueError, match="coronal"):
        phi_sweep(case, model, "axial", 20)
    # the default run fuses both planes: its volume differs; φ previews and the sweep stay one-plane
    fused = run_case(t1_crop, model, tmp_path / "fused", CaseOptions(scale=4, phi=0.5))
    assert fused.fusion and not np.array_equal(panels(fused, model, "coronal", 20)["sr"], same)
    assert np.array_equal(panels(fused, model, "coronal", 20, phi=0.0)["sr"], other)
    fused_gallery = phi_sweep(fused, model, "coronal", 20)
    assert np.array_equal(fused_gallery[2][0], same) and "one plane" in fused_gallery[2][1]
    # a reader comparing φ on a fused volume sees both φ from the network's plane alone, and is told so
    items = reader_items(fused, "coronal", 20, compare_phi=0.0, seed=1)
    assert sorted(it["method"] for it in items) == ["TransMRSR φ=0.00 (one plane)", "TransMRSR φ=0.50 (one plane)"]
    pics = {it["phi"]: reader_image(fused, model, "coronal", 20, it["phi"], one_plane=it["one_plane"]) for it in items}
    # the reader's pictures are radiological (this RAS file: the Super-resolve panels mirrored left-right)
    assert np.array_equal(pics[0.5], same[:, ::-1]) and np.array_equal(pics[0.0], other[:, ::-1])
    plain = reader_items(fused, "coronal", 20, seed=1)  # SR against cubic: the fused SR as run
    assert sorted(it["method"] for it in plain) == ["TransMRSR φ=0.50", "cubic"] and not any(
        it["one_plane"] for it in plain
    )


def test_thick_slice_upload_uses_its_header(tiny_dir, t1_crop, tmp_path, one_torch_thread):
    """A real thick-slice upload: axis and factor come from the header (the scale choice is ignored)."""
    from transmrsr.inference import simulate_file

    lr = tmp_path / "thick.nii.gz"
    simulate_file(t1_crop, lr, 4, 2)
    model = TransMRSR.from_pretrained(tiny_dir)
    case = run_case(lr, model, tmp_path / "out", CaseOptions(scale=8))
    assert (case.axis, case.factor, case.simulated, case.hr) == (2, 4, False, None)
    assert nib.load(str(case.sr_path)).shape == nib.load(str(t1_crop)).shape
    axial = panels(case, model, "axial", 10)
    assert axial["hr"] is None and axial["error"] is None


def _enter_number(page, elem_id: str, value: str) -> None:
    """Type ``value`` into the number box of the Gradio component ``#elem_id`` and submit it."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(value)
    box.press("Enter")


def test_browser_upload_run_and_view(server, browser, t1_crop):
    """Debian's Chromium via Playwright: upload, run, see the four panels, move slice and φ."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(server)
    page.locator("#volume-upload input[type=file]").set_input_files(str(t1_crop))
    page.locator("#run").click()
    for panel in ("lr", "sr", "hr", "error"):
        expect(page.locator(viewer_panel(panel))).to_be_visible(timeout=120_000)
    expect(page.locator("#case-info")).to_contain_text("simulated from the isotropic upload", timeout=30_000)
    expect(page.locator("#metrics")).to_contain_text("TransMRSR")
    expect(page.locator("#slice-note")).to_contain_text("slice 28 of 56")
    sr_before = page.locator(viewer_panel("sr")).get_attribute("data-tag")  # the slice drawn (index:φ)

    _enter_number(page, "slice", "10")
    expect(page.locator("#slice-note")).to_contain_text("slice 10 of 56", timeout=60_000)
    expect(page.locator(viewer_panel("sr"))).not_to_have_attribute("data-tag", sr_before, timeout=60_000)

    sr_slice10 = page.locator(viewer_panel("sr")).get_attribute("data-tag")
    _enter_number(page, "phi", "0")
    expect(page.locator("#slice-note")).to_contain_text("recomputed live", timeout=60_000)
    expect(page.locator(viewer_panel("sr"))).not_to_have_attribute("data-tag", sr_slice10, timeout=60_000)
    page.close()
