"""The Annotate tab: a blinded reader study in the real app (Chromium), kept across a restart."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from transmrsr.annotations import AnnotationStore, Reading
from transmrsr.studio import Case, painted_region, reader_image, reader_items

from apphelpers import fetch, run_file, running_app

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def app(tiny_dir, tmp_path_factory):
    annotations = tmp_path_factory.mktemp("study") / "annotations"  # --annotations wins over the environment's
    args = ["--annotations", str(annotations), "--study-operator"]
    with running_app(tmp_path_factory.mktemp("work"), tiny_dir, args=args) as server:
        server.annotations = annotations
        yield server


def open_annotate(browser, url):
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(url)
    page.get_by_role("tab", name="Annotate").click()
    return page


def expect_toast(page, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator(".toast-body").filter(has_text=text)).to_be_visible(timeout=30_000)
    assert "Traceback" not in page.content()


# ---------------------------------------------------------------------------------------- helpers, no server
def synthetic_case(tmp_path) -> Case:
    shape, zooms = (20, 24, 12), (1.0, 1.0, 2.5)  # thick voxels: the picture is stretched along z
    sr = np.zeros(shape, np.float32)
    sr[4:9, 10, 3:6] = 1.0  # a bright spot on coronal slice 10
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = [-10, -12, -15]
    return Case(
        name="synth",
        axis=2,
        factor=4,
        slice_axis=1,
        phi=0.9,
        zooms=zooms,
        affine=affine,
        interp=np.zeros(shape, np.float32),
        sr=sr,
        hr=None,
        scaler=None,
        sr_path=tmp_path / "synth_sr.nii.gz",
        simulated=False,
    )


def test_blinded_items_and_a_painted_picture_back_to_sr_voxels(tmp_path):
    case = synthetic_case(tmp_path)
    items = reader_items(case, "coronal", 10, seed=3)
    assert [it["label"] for it in items] == ["Image A", "Image B"]
    assert sorted(it["method"] for it in items) == ["TransMRSR φ=0.90", "cubic"]
    assert reader_items(case, "coronal", 10, seed=3) == items  # same seed and slice: same order
    orders = {
        tuple(it["method"] for it in reader_items(case, "coronal", k, seed=s)) for k in range(12) for s in range(3)
    }
    assert len(orders) == 2  # the order changes from slice to slice
    with pytest.raises(ValueError, match="coronal"):
        reader_items(case, "axial", 3, compare_phi=0.5)  # another φ only exists on the network's plane
    with pytest.raises(ValueError, match="own φ"):
        reader_items(case, "coronal", 3, compare_phi=0.9)

    pic = reader_image(case, None, "coronal", 10, 0.9)  # what the reader sees: (H, W, 3), stretched and enlarged
    assert pic.ndim == 3 and pic.shape[0] > 2 * case.shape[2]
    painted = pic[..., 0] > 128  # the reader paints exactly the bright spot
    for mask in (painted, np.repeat(np.repeat(painted, 2, 0), 2, 1)):  # also from a canvas at 2x (hi-DPI)
        region = painted_region(case, "coronal", mask)
        store = AnnotationStore(tmp_path / f"a{mask.shape[0]}.sqlite")
        ann = store.add(
            Reading("r", "synth", "coronal", 10, items[0]["method"], 3),
            region,
            case.shape,
            case.affine,
            tmp_path / f"labels{mask.shape[0]}",
        )
        labels = np.asarray(nib.load(str(store.label_files(tmp_path / f"labels{mask.shape[0]}")[0])).dataobj)
        assert np.array_equal(labels == ann, case.sr > 0.5)


# ---------------------------------------------------------------------------------------- the real app
def test_saving_without_reader_or_case_is_a_clear_message(app, browser):
    page = open_annotate(browser, app.url)
    page.locator("#ann-save").click()
    expect_toast(page, "Enter your name in 'Reader'")
    page.locator("#ann-reader input, #ann-reader textarea").first.fill("dr nobody")
    page.locator("#ann-save").click()
    expect_toast(page, "Run a volume in the Super-resolve tab first")
    page.close()
    assert (
        not (app.annotations / "annotations.sqlite").exists()
        or not AnnotationStore(app.annotations / "annotations.sqlite").rows()
    )


def test_blinded_reading_with_a_painted_region_survives_a_restart(app, browser, t1_crop):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(app.url)
    run_file(page, t1_crop)
    page.get_by_role("tab", name="Annotate").click()
    expect(page.locator("#ann-status")).to_contain_text("coronal slice 28 of 56", timeout=60_000)
    expect(page.locator("#ann-image-a img")).to_be_visible()
    expect(page.locator("#ann-image-b img")).to_be_visible()
    assert "cubic" not in page.locator("#ann-status").inner_text()  # blinded: labels only

    page.locator("#ann-reader input, #ann-reader textarea").first.fill("Dr. Test")
    page.locator("#ann-save").click()
    expect_toast(page, "Choose a rating")
    page.locator("#ann-rating").get_by_text("4", exact=True).click()
    page.locator("#ann-hallucination input").check()
    page.locator("#ann-note textarea").fill("bright blob, upper left")
    # a brush stroke in the upper-left quadrant of the picture (centred on the canvas)
    box = page.locator("#ann-editor canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 100, cy - 90)
    page.mouse.down()
    page.mouse.move(cx - 70, cy - 70, steps=3)  # few events: each redraws the canvas (slow without a GPU)
    page.mouse.move(cx - 40, cy - 60, steps=2)
    page.mouse.up()
    page.locator("#ann-save").click()
    expect(page.locator("#ann-status")).to_contain_text("Saved reading #1 of Image A with a region of", timeout=30_000)
    status = page.locator("#ann-status").inner_text()
    assert "cubic" not in status and "TransMRSR" not in status  # Image B still to rate: no unblinding yet
    voxels = int(status.split("region of ")[1].split(" voxels")[0])
    assert not page.locator("#ann-summary").is_visible()  # blind: no per-method summary for a reader
    # the SR lives in the session's private folder, deleted when the tab closes: read it now
    sr_files = list((app.work / "sessions").glob("*/t1_crop_sr_x4.nii.gz"))
    assert len(sr_files) == 1
    sr = nib.load(str(sr_files[0]))
    sr_shape, sr_affine = sr.shape, sr.affine
    page.close()

    app.stop()  # ... and a new process on the same folder
    app.start()
    with sqlite3.connect(app.annotations / "annotations.sqlite") as con:
        con.row_factory = sqlite3.Row
        rows = [dict(r) for r in con.execute("SELECT * FROM annotations")]
    assert len(rows) == 1
    row = rows[0]
    assert (row["reader"], row["case_name"], row["plane"], row["slice"], row["rating"]) == (
        "Dr. Test",
        "t1_crop",
        "coronal",
        28,
        4,
    )
    assert (row["hallucination"], row["artifact"], row["note"]) == (1, 0, "bright blob, upper left")
    assert row["method"] in ("cubic", "TransMRSR φ=0.90") and (row["phi"] is None) == (row["method"] == "cubic")
    assert row["region_voxels"] == voxels > 0

    case_id = hashlib.sha256(t1_crop.read_bytes()).hexdigest()[:16]
    assert row["case_id"] == case_id
    label = nib.load(str(app.annotations / "labels" / f"{case_id}_annotations.nii.gz"))  # keyed by the hash
    assert label.shape == sr_shape
    np.testing.assert_allclose(label.affine, sr_affine, atol=1e-5)
    x, y, z = np.nonzero(np.asarray(label.dataobj))
    assert len(x) == voxels and set(y) == {28}  # on the coronal slice that was shown
    # upper left in the radiological picture: the patient's right (high x in this RAS file), superior (high z)
    assert x.mean() > 28 and z.mean() > 26

    page = open_annotate(browser, app.url)  # the restarted app lists the reading, to the operator
    page.get_by_text("Study operator: pooled results and exports").click()
    page.locator("#ann-pooled").click()
    expect(page.locator("#ann-summary")).to_contain_text(row["method"], timeout=30_000)
    page.locator("#ann-export-csv").click()
    expect(page.locator("#ann-csv a")).to_have_count(1, timeout=30_000)
    csv_text = fetch(page.locator("#ann-csv a").first.get_attribute("href")).decode()
    assert "Dr. Test" in csv_text and "bright blob" in csv_text
    page.locator("#ann-export-labels").click()
    expect(page.locator("#ann-labels")).to_contain_text(f"{case_id}_annotations.nii", timeout=30_000)
    page.close()
