"""The reader-study store: a real SQLite file, label NIfTI aligned with the SR volume, exports."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest

from transmrsr.annotations import AnnotationStore, Reading, blinded_order
from transmrsr.viewer import plane_slice


def test_readings_survive_a_restart_and_export(tmp_path):
    db = tmp_path / "study" / "annotations.sqlite"
    store = AnnotationStore(db)
    a = store.add(Reading("dr a", "case1", "coronal", 10, "TransMRSR", 4, phi=0.5, hallucination=True, note="blur"))
    b = store.add(Reading("dr a", "case1", "coronal", 10, "cubic", 2, artifact=True))
    c = store.add(Reading("dr b", "case1", "axial", 3, "TransMRSR", 5, phi=0.5))
    assert (a, b, c) == (1, 2, 3)
    del store
    reopened = AnnotationStore(db)  # a new process would see the same file
    rows = reopened.rows()
    assert [r["method"] for r in rows] == ["TransMRSR", "cubic", "TransMRSR"]
    assert rows[0]["note"] == "blur" and rows[0]["hallucination"] == 1 and rows[1]["artifact"] == 1
    summary = {r["method"]: r for r in reopened.summary()}
    assert summary["TransMRSR"]["n"] == 2 and summary["TransMRSR"]["mean_rating"] == 4.5
    assert summary["TransMRSR"]["hallucination_rate"] == 0.5 and summary["cubic"]["artifact_rate"] == 1.0
    out = reopened.export_csv(tmp_path / "export.csv")
    with open(out) as fh:
        table = list(csv.DictReader(fh))
    assert [t["rating"] for t in table] == ["4", "2", "5"] and table[2]["reader"] == "dr b"


@pytest.mark.parametrize("bad", [dict(rating=0), dict(rating=6), dict(plane="oblique")])
def test_invalid_readings_are_refused(tmp_path, bad):
    store = AnnotationStore(tmp_path / "a.sqlite")
    fields = dict(reader="r", case_name="c", plane="axial", slice=0, method="cubic", rating=3) | bad
    with pytest.raises(ValueError):
        store.add(Reading(**fields))
    assert store.rows() == []


def test_region_lands_in_a_label_volume_aligned_with_the_sr(tmp_path):
    shape = (20, 24, 16)
    affine = np.array([[1.0, 0, 0, -10], [0, 1.0, 0, -12], [0, 0, 1.0, -8], [0, 0, 0, 1]])
    sr = np.zeros(shape, np.float32)
    sr[5:9, 6:10, 7] = 1.0  # a bright spot on axial slice 7
    shown = plane_slice(sr, "axial", 7)  # what the reader sees
    region = shown > 0.5  # ... and paints
    store = AnnotationStore(tmp_path / "a.sqlite")
    ann = store.add(
        Reading("r", "case9", "axial", 7, "TransMRSR", 2, hallucination=True),
        region=region,
        sr_shape=shape,
        sr_affine=affine,
        label_dir=tmp_path / "labels",
    )
    img = nib.load(str(tmp_path / "labels" / "case9_annotations.nii.gz"))
    labels = np.asarray(img.dataobj)
    np.testing.assert_allclose(img.affine, affine)
    assert labels.shape == shape
    assert set(np.unique(labels[sr > 0.5])) == {ann} and np.count_nonzero(labels) == 16
    assert store.rows()[0]["region_voxels"] == 16
    # a second region in another plane adds to the same file with its own id
    region2 = np.zeros_like(plane_slice(sr, "coronal", 2), dtype=bool)
    region2[0, 0] = True
    ann2 = store.add(
        Reading("r", "case9", "coronal", 2, "cubic", 3),
        region=region2,
        sr_shape=shape,
        sr_affine=affine,
        label_dir=tmp_path / "labels",
    )
    labels = np.asarray(nib.load(str(tmp_path / "labels" / "case9_annotations.nii.gz")).dataobj)
    assert np.count_nonzero(labels == ann) == 16 and np.count_nonzero(labels == ann2) == 1


def test_blinded_order_is_a_shuffle():
    methods = ["TransMRSR φ=0.5", "cubic", "TransMRSR φ=1.0"]
    orders = {tuple(blinded_order(methods, seed)) for seed in range(20)}
    assert all(sorted(o) == sorted(methods) for o in orders) and len(orders) > 1
