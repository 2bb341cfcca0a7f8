"""The reader study on a public deployment: blind until the reader finishes, study and operator
codes, readings that record what produced them, a migrated database, label files keyed by the
case's hash and painted under a lock by several processes, safe CSV cells, bounded fields."""

from __future__ import annotations

import csv
import hashlib
import multiprocessing as mp
import sqlite3

import nibabel as nib
import numpy as np
import pytest

from transmrsr.annotations import COLUMNS, AnnotationStore, Reading

from apphelpers import fetch, run_file, running_app

STUDY, OPERATOR = "reader-code-7", "operator-code-9"
OLD_SCHEMA = """
CREATE TABLE annotations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL, reader TEXT NOT NULL, case_name TEXT NOT NULL,
    plane TEXT NOT NULL CHECK (plane IN ('axial', 'coronal', 'sagittal')), slice INTEGER NOT NULL CHECK (slice >= 0),
    method TEXT NOT NULL, phi REAL, rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    hallucination INTEGER NOT NULL DEFAULT 0, artifact INTEGER NOT NULL DEFAULT 0, note TEXT NOT NULL DEFAULT '',
    region_voxels INTEGER NOT NULL DEFAULT 0
);
"""


def test_an_old_database_is_migrated_in_place(tmp_path):
    db = tmp_path / "annotations.sqlite"
    with sqlite3.connect(db) as con:
        con.executescript(OLD_SCHEMA)
        con.execute(
            "INSERT INTO annotations (created, reader, case_name, plane, slice, method, rating) "
            "VALUES ('2026-01-01', 'dr old', 'c1', 'axial', 3, 'cubic', 2)"
        )
    store = AnnotationStore(db)
    AnnotationStore(db)  # opening twice changes nothing
    new = store.add(
        Reading(
            "dr new",
            "c1",
            "axial",
            4,
            "TransMRSR φ=0.90",
            5,
            phi=0.9,
            case_id="ab" * 8,
            input_sha256="ab" * 32,
            model="m",
            model_version="0123456789ab",
            scale=8,
        )
    )
    rows = store.rows()
    assert list(rows[0]) == COLUMNS and len(rows) == 2 and new == 2
    assert rows[0]["reader"] == "dr old" and rows[0]["model"] == "" and rows[0]["scale"] is None
    assert (rows[1]["model_version"], rows[1]["scale"], rows[1]["input_sha256"]) == ("0123456789ab", 8, "ab" * 32)


def test_csv_cells_are_not_formulas_and_fields_are_bounded(tmp_path):
    store = AnnotationStore(tmp_path / "a.sqlite")
    store.add(Reading("@reader", "=cmd|' /C calc'!A0", "coronal", 1, "-method", 3, note="+SUM(A1:A9)"))
    with open(store.export_csv(tmp_path / "out.csv"), newline="") as fh:
        row = next(csv.DictReader(fh))
    assert row["reader"] == "'@reader" and row["case_name"].startswith("'=") and row["method"] == "'-method"
    assert row["note"] == "'+SUM(A1:A9)" and row["rating"] == "3"
    for field, value in (("note", "x" * 2001), ("reader", "r" * 81)):
        kwargs = {"note": value} if field == "note" else {}
        reader = value if field == "reader" else "r"
        with pytest.raises(ValueError, match="too long"):
            store.add(Reading(reader, "c", "coronal", 1, "cubic", 3, **kwargs))
    with pytest.raises(ValueError, match="label file name"):
        store.add(
            Reading("r", "c", "coronal", 1, "cubic", 3, case_id="../../etc"),
            np.ones((4, 4), bool),
            (4, 2, 4),
            np.eye(4),
            tmp_path / "labels",
        )


SHAPE = (48, 64, 48)  # large enough that read-paint-write takes a while


def _paint(db, labels, slices, start, out) -> None:
    """One process of readers: a region on each of its coronal slices, all in one case."""
    store = AnnotationStore(db)
    start.wait()  # both processes paint at the same time
    for k in slices:
        region = np.zeros((SHAPE[2], SHAPE[0]), bool)
        region[2:5, 3:6] = True
        out.put(
            store.add(
                Reading("r", "case", "coronal", k, "cubic", 3, case_id="c0ffee" * 2), region, SHAPE, np.eye(4), labels
            )
        )


def test_two_processes_painting_one_case_lose_nothing(tmp_path):
    db, labels = tmp_path / "a.sqlite", tmp_path / "labels"
    AnnotationStore(db)
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_paint, args=(db, labels, range(i, 64, 2), start, out)) for i in (0, 1)]
    for p in procs:
        p.start()
    ids = {out.get(timeout=300) for _ in range(64)}
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    files = AnnotationStore(db).label_files(labels)
    assert [f.name for f in files] == ["c0ffeec0ffee_annotations.nii.gz"]  # keyed by the case id
    painted = np.asarray(nib.load(str(files[0])).dataobj).astype(int)
    assert set(np.unique(painted)) - {0} == ids and len(ids) == 64  # all 64 regions are there


# ---------------------------------------------------------------------------------------- the public app
@pytest.fixture(scope="module")
def public_app(tiny_dir, tmp_path_factory):
    codes = dict(TRANSMRSR_STUDY_CODE=STUDY, TRANSMRSR_OPERATOR_CODE=OPERATOR)
    with running_app(tmp_path_factory.mktemp("work"), tiny_dir, TRANSMRSR_PUBLIC="1", **codes) as app:
        yield app


def _toast(page, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator(".toast-body").filter(has_text=text).first).to_be_visible(timeout=30_000)
    for close in page.locator(".toast-close").all():
        close.click()


def test_public_reader_study_is_blind_coded_and_recorded(public_app, browser, t1_crop, one_torch_thread):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(public_app.url)
    run_file(page, t1_crop)
    page.get_by_role("tab", name="Annotate").click()
    expect(page.locator("#ann-status")).to_contain_text("coronal slice 28 of 56", timeout=60_000)
    page.locator("#ann-reader input, #ann-reader textarea").first.fill("Dr. Blind")
    page.locator("#ann-rating").get_by_text("4", exact=True).click()
    page.locator("#ann-save").click()
    _toast(page, "study code")
    page.locator("#ann-code input").fill(STUDY)
    page.locator("#ann-save").click()
    expect(page.locator("#ann-status")).to_contain_text("Saved reading #1 of Image A", timeout=30_000)
    # blind: no per-method numbers anywhere for the reader, nor the method of the rated image
    assert not page.locator("#ann-summary").is_visible() and not page.locator("#ann-my-summary").is_visible()
    body = page.locator("body").inner_text()
    assert "mean rating" not in body and "cubic" not in page.locator("#ann-status").inner_text()
    # exports and the pooled summary are the operator's
    page.get_by_text("Study operator: pooled results and exports").click()
    page.locator("#ann-export-csv").click()
    _toast(page, "operator")
    page.locator("#ann-pooled").click()
    _toast(page, "operator")
    assert not page.locator("#ann-summary").is_visible()
    # the reader finishes: their own summary, then no more saving in this session
    page.locator("#ann-finish").click()
    expect(page.locator("#ann-my-summary")).to_be_visible(timeout=30_000)
    expect(page.locator("#ann-my-summary")).to_contain_text(re_methods())
    page.locator("#ann-rating").get_by_text("3", exact=True).click()
    page.locator("#ann-save").click()
    _toast(page, "finished")
    # the operator
    page.locator("#ann-operator-code input").fill(OPERATOR)
    page.locator("#ann-pooled").click()
    expect(page.locator("#ann-summary")).to_be_visible(timeout=30_000)
    page.locator("#ann-export-csv").click()
    expect(page.locator("#ann-csv a")).to_have_count(1, timeout=30_000)
    text = fetch(page.locator("#ann-csv a").first.get_attribute("href")).decode()
    page.close()
    row = next(csv.DictReader(text.splitlines()))
    sha = hashlib.sha256(t1_crop.read_bytes()).hexdigest()
    assert (row["reader"], row["plane"], row["slice"], row["scale"], row["model"]) == (
        "Dr. Blind",
        "coronal",
        "28",
        "4",
        "tiny",
    )
    assert row["input_sha256"] == sha and row["case_id"] == sha[:16] and len(row["model_version"]) == 12
    assert row["method"] == "cubic" or row["phi"] == "0.9"
    with sqlite3.connect(public_app.annotations / "annotations.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM annotations").fetchone()[0] == 1


def re_methods():
    import re

    return re.compile("cubic|TransMRSR")
