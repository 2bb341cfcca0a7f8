"""BIDS datasets in, BIDS derivatives out (``desc-transmrsr``), for ``transmrsr sr-dataset``.

Inputs are ``sub-<label>[/ses-<label>]/anat/*_<suffix>.nii[.gz]`` under the dataset root (the
folder holding ``dataset_description.json``). Each output keeps the input's entities and
folders, with ``desc-transmrsr`` as its last entity (``sub-01_run-1_desc-transmrsr_T1w.nii.gz``),
and gets a JSON sidecar (:func:`sidecar`); the derivatives folder gets its own
``dataset_description.json`` (``DatasetType: derivative``, ``GeneratedBy``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from pathlib import Path

from ..errors import NamesParameters
from ..fileutil import atomic_write_bytes

DESC = "transmrsr"
_NII = re.compile(r"\.nii(\.gz)?$", re.I)
_ENTITY = re.compile(r"^[a-zA-Z0-9]+-[a-zA-Z0-9]+$")


class BIDSError(NamesParameters, ValueError):
    """The folder is not a BIDS dataset, or a name is not a BIDS name; the message says which
    (naming the caller's parameters as :mod:`transmrsr.errors` says)."""


def check_root(root: str | os.PathLike) -> Path:
    """The dataset root, checked: a folder with ``dataset_description.json``."""
    p = Path(root)
    if not p.is_dir():
        raise BIDSError(f"{p}: no such folder (expected a BIDS dataset)")
    if not (p / "dataset_description.json").is_file():
        raise BIDSError(f"{p}: not a BIDS dataset (no dataset_description.json in it)")
    return p


def find_inputs(root: str | os.PathLike, suffix: str = "T1w") -> list[Path]:
    """The anatomical NIfTI files with ``suffix`` in the dataset, as paths relative to ``root``,
    sorted (the same order in every process)."""
    base = check_root(root)
    if not re.fullmatch(r"[A-Za-z0-9]+", suffix or ""):
        raise BIDSError(
            f"{{suffix}} {suffix!r} is not a BIDS suffix (letters and digits, e.g. T1w, T2w, FLAIR)",
            params={"suffix": "the suffix"},
        )
    found = []
    for pattern in ("sub-*/anat/*", "sub-*/ses-*/anat/*"):
        for p in base.glob(pattern):
            if p.is_file() and _NII.search(p.name) and split_name(p.name)[1] == suffix:
                found.append(p.relative_to(base))
    return sorted(set(found), key=lambda q: q.as_posix())


def split_name(name: str) -> tuple[list[str], str, str]:
    """``sub-01_run-1_T1w.nii.gz`` -> ``(["sub-01", "run-1"], "T1w", ".nii.gz")``."""
    m = _NII.search(name)
    ext = m.group(0) if m else Path(name).suffix
    stem = name[: len(name) - len(ext)]
    parts = stem.split("_")
    return parts[:-1], parts[-1], ext


def derivative_path(rel: str | os.PathLike, desc: str = DESC) -> Path:
    """Where the SR of ``rel`` (relative to the dataset root) goes in the derivatives folder:
    same folders, same entities, ``desc-<desc>`` last, ``.nii.gz``."""
    rel = Path(rel)
    entities, suffix, _ = split_name(rel.name)
    if not entities or not entities[0].startswith("sub-") or not all(_ENTITY.match(e) for e in entities):
        raise BIDSError(f"{rel}: not a BIDS file name (sub-<label>[_<key>-<value>...]_<suffix>.nii.gz)")
    kept = [e for e in entities if not e.startswith("desc-")]
    return rel.parent / ("_".join([*kept, f"desc-{desc}", suffix]) + ".nii.gz")


def sidecar_path(nifti: str | os.PathLike) -> Path:
    p = Path(nifti)
    return p.with_name(_NII.sub("", p.name) + ".json")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def write_dataset_description(out: str | os.PathLike, source_root: str | os.PathLike) -> Path:
    """``dataset_description.json`` of the derivatives folder (written once; kept if present)."""
    from .. import __version__

    path = Path(out) / "dataset_description.json"
    if path.is_file():
        return path
    src = {}
    try:
        src = json.loads((Path(source_root) / "dataset_description.json").read_text())
    except (OSError, ValueError):
        pass
    desc = {
        "Name": f"TransMRSR super-resolution of {src.get('Name', 'a BIDS dataset')}",
        "BIDSVersion": src.get("BIDSVersion", "1.9.0"),
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "transmrsr",
                "Version": __version__,
                "Description": "TransMRSR thick-slice brain MRI super-resolution (transmrsr sr-dataset)",
            }
        ],
        "SourceDatasets": [{"URL": "bids:raw"}],
    }
    atomic_write_bytes(path, (json.dumps(desc, indent=2) + "\n").encode())
    ignore = Path(out) / ".bidsignore"
    if not ignore.exists():
        atomic_write_bytes(ignore, b"transmrsr_summary.tsv\n")
    return path


def sidecar(
    *,
    source_rel: str | os.PathLike,
    input_sha256: str,
    model_name: str,
    model_version: str,
    phi: float | None,
    factor: float,
    extra: dict | None = None,
) -> dict:
    """The JSON sidecar of one output: provenance (model name / version, phi, factor, input
    SHA-256, software version, time) and the geometry in ``extra``."""
    from .. import __version__

    doc = {
        "Description": "Thick-slice volume super-resolved with TransMRSR",
        "Sources": [f"bids:raw:{Path(source_rel).as_posix()}"],
        "SoftwareName": "transmrsr",
        "SoftwareVersion": __version__,
        "ModelName": model_name,
        "ModelVersion": model_version,
        "Phi": phi,
        "Factor": float(factor),
        "InputSHA256": input_sha256,
        "DateTime": now_utc(),
    }
    doc.update(extra or {})
    return doc
