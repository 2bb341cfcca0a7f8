"""What the Super-resolve tab tells the user, in Debian's Chromium at 1280×800: one progress bar
with an ETA, Run disabled while running, Run and results without scrolling, head-mask metrics
first, lossless panels, an LR ↔ SR slider whose layers cover each other, stale results cleared
by a new upload, a sentence instead of empty HR panels, a warning for inputs out of range."""

from __future__ import annotations

import io

import numpy as np
import pytest

from transmrsr import TransMRSR
from transmrsr.inference import simulate_file
from transmrsr.mpr import Orientation
from transmrsr.studio import CaseOptions, run_case
from transmrsr.viewer import to_rgb, window

from apphelpers import fetch, running_app, viewer_panel

VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("work"), tiny_dir) as app:
        yield app


def _png(url: str) -> tuple[str, np.ndarray]:
    from PIL import Image

    img = Image.open(io.BytesIO(fetch(url)))
    return img.format, np.asarray(img.convert("RGB"))


def _shown_rect(img) -> tuple[float, float, float, float]:
    """Where an <img> with object-fit: contain actually draws its picture (x, y, w, h)."""
    box = img.bounding_box()
    nw, nh = img.evaluate("e => [e.naturalWidth, e.naturalHeight]")
    fit = img.evaluate("e => getComputedStyle(e).objectFit")
    if fit != "contain":
        return box["x"], box["y"], box["width"], box["height"]
    k = min(box["width"] / nw, box["height"] / nh)
    w, h = nw * k, nh * k
    return box["x"] + (box["width"] - w) / 2, box["y"] + (box["height"] - h) / 2, w, h


def test_run_progress_layout_panels_and_slider(server, browser, tiny_dir, t1_crop, tmp_path, one_torch_thread):
    from playwright.sync_api import expect

    page = browser.new_page(viewport=VIEWPORT)
    page.goto(server.url)
    page.locator("#volume-upload input[type=file]").set_input_files(str(t1_crop))
    expect(page.locator("#volume-upload")).to_contain_text("t1_crop", timeout=30_000)
    run = page.locator("#run")
    box = run.bounding_box()
    assert box["y"] + box["height"] <= VIEWPORT["height"], f"Run is below the fold: {box}"
    run.click()
    # while running: Run disabled, exactly one progress bar, and it gives an ETA
    expect(run).to_be_disabled(timeout=10_000)
    expect(page.locator(".progress-level-inner").filter(has_text="ETA")).to_have_count(1, timeout=60_000)
    assert page.locator(".progress-bar").count() == 1
    expect(page.locator(viewer_panel("sr"))).to_be_visible(timeout=120_000)
    expect(run).to_be_enabled(timeout=30_000)

    # results without scrolling at 1280×800: the SR panel and the metrics table
    for elem in (viewer_panel("sr"), "#metrics"):
        b = page.locator(elem).bounding_box()
        assert b["y"] >= 0 and b["y"] + min(b["height"], 120) <= VIEWPORT["height"], f"{elem} needs scrolling: {b}"
    header = page.locator("#metrics thead, #metrics [role=columnheader]").first.inner_text()
    assert header.index("PSNR mask") < header.index("PSNR (dB)"), header

    # the LR ↔ SR slider (in its accordion): lossless PNG, its LR layer exactly the picture the package
    # draws of the compare plane's slice, oriented as the viewer shows it (radiological)
    page.get_by_text("LR ↔ SR slider", exact=False).first.click()
    imgs = page.locator("#compare img")
    expect(imgs).to_have_count(2, timeout=30_000)
    fmt, shown = _png(imgs.nth(0).get_attribute("src"))
    assert fmt == "PNG"
    model = TransMRSR.from_pretrained(tiny_dir)
    case = run_case(t1_crop, model, tmp_path / "local", CaseOptions(scale=4, phi=0.9, fusion=False))
    orient = Orientation(case.affine, case.shape)
    lr = orient.display(np.take(case.interp, 28, axis=orient.planes["coronal"].axis), "coronal")
    assert np.array_equal(shown, to_rgb(window(lr, *case.window), orient.planes["coronal"].spacing))

    # the LR ↔ SR slider: both layers on the same pixels, the whole picture inside the component
    expect(imgs).to_have_count(2)
    a, b = _shown_rect(imgs.nth(0)), _shown_rect(imgs.nth(1))
    assert np.allclose(a, b, atol=1.0), (a, b)
    comp = page.locator("#compare").bounding_box()
    assert comp["y"] - 1 <= a[1] and a[1] + a[3] <= comp["y"] + comp["height"] + 1, (a, comp)
    for i in range(2):
        assert _png(imgs.nth(i).get_attribute("src"))[0] == "PNG"

    # a φ sweep, then a new upload: the stale results and the sweep go
    page.get_by_text("φ sweep", exact=True).first.click()
    page.locator("#sweep").click()
    expect(page.locator("#sweep-gallery img").first).to_be_visible(timeout=120_000)
    page.locator("#volume-upload").get_by_role("button", name="Clear").click()
    other = tmp_path / "other.nii.gz"
    other.write_bytes(t1_crop.read_bytes())
    page.locator("#volume-upload input[type=file]").set_input_files(str(other))
    expect(page.locator(viewer_panel("sr"))).to_have_count(0, timeout=30_000)
    expect(page.locator("#sweep-gallery img")).to_have_count(0)
    expect(page.locator("#metrics")).not_to_contain_text("TransMRSR")
    expect(page.locator("#download")).not_to_contain_text("t1_crop_sr")
    expect(page.locator("#case-info")).not_to_contain_text("t1_crop")
    page.close()


def test_thick_upload_says_there_is_no_reference_and_warns_out_of_range(server, browser, t1_crop, tmp_path):
    from playwright.sync_api import expect

    lr = tmp_path / "sub-01_T2w.nii.gz"  # named as a T2 scan: outside the models' training range
    simulate_file(t1_crop, lr, 4, 2)
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(server.url)
    page.locator("#volume-upload input[type=file]").set_input_files(str(lr))
    expect(page.locator("#volume-upload")).to_contain_text("T2w", timeout=30_000)
    page.locator("#run").click()
    expect(page.locator(viewer_panel("sr"))).to_be_visible(timeout=120_000)
    expect(page.locator("#no-reference")).to_be_visible()
    expect(page.locator("#no-reference")).to_contain_text("No HR reference")
    expect(page.locator(viewer_panel("hr"))).to_have_count(0)
    expect(page.locator(viewer_panel("error"))).to_have_count(0)
    warning = page.locator("#input-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("T1-weighted")
    expect(warning).to_contain_text("T2W")
    expect(warning).to_contain_text("×4")  # the custom model's training factor is not recorded
    page.close()
