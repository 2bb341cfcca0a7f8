"""Reader-study annotations: an embedded SQLite store, region masks as label NIfTI, exports.

One row per reading: which case and slice, which method was shown (blinded to the reader:
``TransMRSR`` at some φ, or ``cubic``), a 1–5 rating, hallucination / artifact flags and a free
note. Painted regions are written into a label volume aligned with the SR volume (same shape and
affine), one label file per case, label value = the annotation's id. Everything survives a
restart: the database is a file. Each reading also records what produced the shown images (model
name and weights version, scale, φ) and the input's SHA-256; label files are keyed by the case
id (the input's hash), never by the upload's name, and painted under a file lock, so readers in
several processes lose nothing. Databases of earlier versions gain the new columns on opening.
"""

from __future__ import annotations

import csv
import random
import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .data.io import save_volume
from .mpr import Orientation
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
#: Columns added after the first release: (name, SQL type and default); added to older databases on opening.
ADDED_COLUMNS = [
    ("case_id", "TEXT NOT NULL DEFAULT ''"),
    ("input_sha256", "TEXT NOT NULL DEFAULT ''"),
    ("model", "TEXT NOT NULL DEFAULT ''"),
    ("model_version", "TEXT NOT NULL DEFAULT ''"),
    ("scale", "INTEGER"),
    # the trust layer (issue #18): mean uncertainty of the SR inside the painted region and in the rest of
    # the head on the same slice, input intensity units; NULL without a region or an uncertainty map
    ("uncertainty_in_region", "REAL"),
    ("uncertainty_outside_region", "REAL"),
]
COLUMNS = [
    "id",
    "created",
    "reader",
    "case_name",
    "plane",
    "slice",
    "method",
    "phi",
    "rating",
    "hallucination",
    "artifact",
    "note",
    "region_voxels",
    *[name for name, _ in ADDED_COLUMNS],
]
#: Longest accepted text of each free field (characters).
MAX_LENGTHS = {
    "reader": 80,
    "case_name": 200,
    "method": 120,
    "note": 2000,
    "case_id": 64,
    "input_sha256": 64,
    "model": 200,
    "model_version": 64,
}
#: First characters that make a spreadsheet read a CSV cell as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
    case_id: str = ""  # the input's hash (labels are keyed by it); empty: the case name
    input_sha256: str = ""
    model: str = ""
    model_version: str = ""
    scale: int | None = None
    uncertainty_in_region: float | None = None  # mean uncertainty in the painted region (input units)
    uncertainty_outside_region: float | None = None  # ... in the rest of the head on that slice

    def label_key(self) -> str:
        """The file-name-safe key of the case's label volume."""
        key = self.case_id or re.sub(r"[^A-Za-z0-9_.-]", "_", self.case_name).lstrip("._-")[:64]
        if not _SAFE_KEY.match(key or ""):
            raise ValueError(f"case id {key!r} is not usable as a label file name")
        return key

    def check(self) -> None:
        """ValueError for a reading that cannot be stored (values out of range, fields too long)."""
        if self.plane not in PLANES:
            raise ValueError(f"plane must be one of {sorted(PLANES)}, got {self.plane!r}")
        if not 1 <= int(self.rating) <= 5:
            raise ValueError(f"rating must be 1..5, got {self.rating}")
        for name, limit in MAX_LENGTHS.items():
            if len(str(getattr(self, name) or "")) > limit:
                raise ValueError(f"{name.replace('_', ' ')} is too long ({limit} characters at most)")


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
            self._migrate(con)

    @staticmethod
    def _migrate(con: sqlite3.Connection) -> None:
        """Add the columns of :data:`ADDED_COLUMNS` that an older database lacks (rows kept)."""
        have = {r[1] for r in con.execute("PRAGMA table_info(annotations)")}
        for name, decl in ADDED_COLUMNS:
            if name not in have:
                con.execute(f"ALTER TABLE annotations ADD COLUMN {name} {decl}")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.row_factory = sqlite3.Row
        return con

    def add(
        self,
        reading: Reading,
        region: np.ndarray | None = None,
        sr_shape=None,
        sr_affine=None,
        label_dir: str | Path | None = None,
    ) -> int:
        """Store a reading; with ``region`` (a 2-D mask of the shown slice of the anatomical
        ``reading.plane``, whose voxel axis the affine gives, as :func:`transmrsr.viewer.plane_slice`
        lays out that axis) also write it into the case's label NIfTI (aligned with the SR volume).
        The uncertainty figures of the reading are kept only with a region. Returns the annotation id."""
        reading.check()
        if region is not None:
            reading.label_key()
        n_region = int(np.count_nonzero(region)) if region is not None else 0
        with closing(self._connect()) as con, con:
            cur = con.execute(
                "INSERT INTO annotations (created, reader, case_name, plane, slice, method, phi, rating, hallucination,"
                " artifact, note, region_voxels, case_id, input_sha256, model, model_version, scale,"
                " uncertainty_in_region, uncertainty_outside_region)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    reading.reader.strip() or "anonymous",
                    reading.case_name,
                    reading.plane,
                    int(reading.slice),
                    reading.method,
                    reading.phi,
                    int(reading.rating),
                    int(bool(reading.hallucination)),
                    int(bool(reading.artifact)),
                    reading.note,
                    n_region,
                    reading.case_id,
                    reading.input_sha256,
                    reading.model,
                    reading.model_version,
                    None if reading.scale is None else int(reading.scale),
                    _finite_or_none(reading.uncertainty_in_region) if n_region else None,
                    _finite_or_none(reading.uncertainty_outside_region) if n_region else None,
                ),
            )
            ann_id = int(cur.lastrowid)
        if n_region:
            if sr_shape is None or sr_affine is None or label_dir is None:
                raise ValueError("a region needs sr_shape, sr_affine and label_dir")
            self.write_region(ann_id, reading, region, sr_shape, sr_affine, label_dir)
        return ann_id

    def label_path(self, label_dir: str | Path, case_key: str) -> Path:
        """The label NIfTI of a case, by its key (:meth:`Reading.label_key`)."""
        return Path(label_dir) / f"{case_key}_annotations.nii.gz"

    def write_region(self, ann_id: int, reading: Reading, region: np.ndarray, sr_shape, sr_affine, label_dir) -> Path:
        """Paint ``region`` with value ``ann_id`` into the case's label volume (created on first
        use), under a file lock: read, paint and write are one step for all processes."""
        from filelock import FileLock

        path = self.label_path(label_dir, reading.label_key())
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=120):
            return self._paint(path, ann_id, reading, region, sr_shape, sr_affine)

    @staticmethod
    def _paint(path: Path, ann_id: int, reading: Reading, region: np.ndarray, sr_shape, sr_affine) -> Path:
        import nibabel as nib

        labels = (
            np.asarray(nib.load(str(path)).dataobj, dtype=np.int32) if path.exists() else np.zeros(sr_shape, np.int32)
        )
        if labels.shape != tuple(sr_shape):
            raise ValueError(f"{path}: label volume shape {labels.shape} differs from the SR's {tuple(sr_shape)}")
        # the anatomical plane's voxel axis from the affine (any voxel order; PLANES' for RAS-like files)
        axis = Orientation(np.asarray(sr_affine), tuple(sr_shape)).planes[reading.plane].axis
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
            writer.writerows({k: csv_safe(v) for k, v in row.items()} for row in self.rows())
        return out

    def summary(self, reader: str | None = None) -> list[dict]:
        """Per method: readings, mean rating, hallucination and artifact rates (of one ``reader``,
        or pooled over all when None)."""
        where, args = ("WHERE reader = ?", (reader.strip() or "anonymous",)) if reader is not None else ("", ())
        with closing(self._connect()) as con:
            cur = con.execute(
                "SELECT method, COUNT(*) AS n, AVG(rating) AS mean_rating, AVG(hallucination) AS hallucination_rate,"
                f" AVG(artifact) AS artifact_rate FROM annotations {where} GROUP BY method ORDER BY method",
                args,
            )
            return [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in dict(r).items()} for r in cur]

    def uncertainty_summary(self) -> list[dict]:
        """The readers' hallucination flags against the uncertainty map, per case and method: of the
        readings flagged as hallucination with a painted region and an uncertainty figure, how many
        (``flags``), their painted voxels, the mean uncertainty inside the regions (weighted by their
        voxels) and in the rest of the head on the same slices, and the ratio inside / outside (above
        1: the map is higher where readers saw a hallucination). Input intensity units."""
        with closing(self._connect()) as con:
            cur = con.execute(
                "SELECT case_id, case_name, method, COUNT(*) AS flags, SUM(region_voxels) AS voxels,"
                " SUM(uncertainty_in_region * region_voxels) * 1.0 / SUM(region_voxels) AS uncertainty_inside,"
                " AVG(uncertainty_outside_region) AS uncertainty_outside FROM annotations"
                " WHERE hallucination = 1 AND region_voxels > 0 AND uncertainty_in_region IS NOT NULL"
                " GROUP BY case_id, case_name, method ORDER BY case_name, case_id, method"
            )
            out = []
            for r in cur:
                row = dict(r)
                inside, outside = row["uncertainty_inside"], row["uncertainty_outside"]
                row["ratio"] = inside / outside if inside is not None and outside else None
                out.append({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
            return out


def _finite_or_none(value) -> float | None:
    """A float for the database, or None (NULL) for None / NaN / infinity."""
    if value is None:
        return None
    v = float(value)
    return v if np.isfinite(v) else None


def csv_safe(value):
    """A CSV cell that a spreadsheet shows as text: strings starting with ``= + - @`` (or a tab /
    carriage return) get a leading apostrophe; other values are unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value
