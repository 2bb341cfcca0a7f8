"""Reader-study annotations: an embedded SQLite store, region masks as label NIfTI, exports.

One row per reading: which case and slice, which method was shown (blinded to the reader:
``TransMRSR`` at some φ, or ``cubic``), a 1–5 rating, hallucination / artifact flags and a free
note. Painted regions are written into a label volume aligned with the SR volume (same shape and
affine), one label file per case, label value = the annotation's id. Everything survives a
restart: the database is a file.
"""

from __future__ import annotations

import csv
import random
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .data.io import save_volume
from .viewer import PLANES

SCHEMA = """
CREATE TABLE IF NOT EXISTS annotations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    reader TEXT NOT NULL,
    case_name TEXT NOT NULL,
    plane TEXT NOT NULL CHECK (plane IN ('axial', 'coronal', 'sagittal')),
    slice INTEGER NOT NULL CHECK (slice >= 0),
    method TEXT NOT NULL,
    phi REAL,
    rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    hallucination INTEGER NOT NULL DEFAULT 0,
    artifact INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT '',
    region_voxels INTEGER NOT NULL DEFAULT 0
);
"""
COLUMNS = ["id", "created", "reader", "case_name", "plane", "slice", "method", "phi", "rating", "hallucination",
           "artifact", "note", "region_voxels"]


@dataclass
class Reading:
    """What a reader says about one shown slice."""

    reader: str
    case_name: str
    plane: str
    slice: int
    method: str
    rating: int
    phi: float | None = None
    hallucination: bool = False
    artifact: bool = False
    note: str = ""


def blinded_order(methods: list[str], seed: int | None = None) -> list[str]:
    """The methods in a random order, so that the reader cannot tell which is which."""
    order = list(methods)
    random.Random(seed).shuffle(order)
    return order


class AnnotationStore:
    """SQLite-backed annotations at ``db_path`` (created if missing)."""

    def __init__(self, db_path: str | Path) -> None:
        self.path = Path(db_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as con, con:
            con.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.row_factory = sqlite3.Row
        return con

    def add(self, reading: Reading, region: np.ndarray | None = None, sr_shape=None, sr_affine=None,
            label_dir: str | Path | None = None) -> int:
        """Store a reading; with ``region`` (a 2-D mask of the shown slice, as
        :func:`transmrsr.viewer.plane_slice` lays it out) also write it into the case's label
        NIfTI (aligned with the SR volume). Returns the annotation id."""
        if reading.plane not in PLANES:
            raise ValueError(f"plane must be one of {sorted(PLANES)}, got {reading.plane!r}")
        if not 1 <= int(reading.rating) <= 5:
            raise ValueError(f"rating must be 1..5, got {reading.rating}")
        n_region = int(np.count_nonzero(region)) if region is not None else 0
        with closing(self._connect()) as con, con:
            cur = con.execute(
                "INSERT INTO annotations (created, reader, case_name, plane, slice, method, phi, rating, hallucination,"
                " artifact, note, region_voxels) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (datetime.now(timezone.utc).isoformat(timespec="seconds"), reading.reader.strip() or "anonymous",
                 reading.case_name, reading.plane, int(reading.slice), reading.method, reading.phi, int(reading.rating),
                 int(bool(reading.hallucination)), int(bool(reading.artifact)), reading.note, n_region),
            )
            ann_id = int(cur.lastrowid)
        if n_region:
            if sr_shape is None or sr_affine is None or label_dir is None:
                raise ValueError("a region needs sr_shape, sr_affine and label_dir")
            self.write_region(ann_id, reading, region, sr_shape, sr_affine, label_dir)
        return ann_id

    def label_path(self, label_dir: str | Path, case_name: str) -> Path:
        return Path(label_dir) / f"{case_name}_annotations.nii.gz"

    def write_region(self, ann_id: int, reading: Reading, region: np.ndarray, sr_shape, sr_affine, label_dir) -> Path:
        """Paint ``region`` with value ``ann_id`` into the case's label volume (created on first use)."""
        import nibabel as nib

        path = self.label_path(label_dir, reading.case_name)
        labels = np.asarray(nib.load(str(path)).dataobj, dtype=np.int32) if path.exists() else np.zeros(sr_shape, np.int32)
        if labels.shape != tuple(sr_shape):
            raise ValueError(f"{path}: label volume shape {labels.shape} differs from the SR's {tuple(sr_shape)}")
        axis = PLANES[reading.plane]
        view = np.moveaxis(labels, axis, 0)[int(reading.slice)]  # (A, B) in voxel order
        mask = np.flipud(np.asarray(region, dtype=bool)).T  # undo plane_slice's display transform
        if mask.shape != view.shape:
            raise ValueError(f"region shape {np.asarray(region).shape} does not match the {reading.plane} slice")
        view[mask] = ann_id
        save_volume(path, labels.astype(np.float32), np.asarray(sr_affine))
        return path

    def label_files(self, label_dir: str | Path) -> list[Path]:
        """The label NIfTIs written so far into ``label_dir`` (one per case), sorted."""
        d = Path(label_dir)
        return sorted(d.glob("*_annotations.nii.gz")) if d.is_dir() else []

    def rows(self) -> list[dict]:
        with closing(self._connect()) as con:
            return [dict(r) for r in con.execute(f"SELECT {', '.join(COLUMNS)} FROM annotations ORDER BY id")]

    def export_csv(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows())
        return out

    def summary(self) -> list[dict]:
        """Per method: readings, mean rating, hallucination and artifact rates."""
        with closing(self._connect()) as con:
            cur = con.execute(
                "SELECT method, COUNT(*) AS n, AVG(rating) AS mean_rating, AVG(hallucination) AS hallucination_rate,"
                " AVG(artifact) AS artifact_rate FROM annotations GROUP BY method ORDER BY method"
            )
            return [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in dict(r).items()} for r in cur]
