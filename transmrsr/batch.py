"""Whole datasets: ``transmrsr sr-dataset BIDS_ROOT OUT_DERIV [--suffix T1w]``.

Every ``*_<suffix>.nii[.gz]`` of a BIDS dataset (:mod:`transmrsr.data.bids`) is super-resolved into
a BIDS derivatives folder (``desc-transmrsr``), with a JSON sidecar each (model name / version,
phi, factor, input SHA-256, software version, time). The command

* resumes: an output whose sidecar is there and names the same input SHA-256, model, phi and
  fusion is skipped (the NIfTI is written first, atomically, the sidecar last, so a killed run never leaves
  an output that looks done);
* goes on past a bad volume: one line on stderr (``transmrsr sr-dataset: <input>: <problem>``),
  a ``failed`` row in the summary, and the next volume;
* shards: under ``torchrun`` / ``accelerate launch`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in
  the environment) process ``r`` of ``n`` takes volumes ``r, r + n, ...`` of the sorted list, on
  its own device (``cuda:<LOCAL_RANK>`` when there are GPUs, else the CPU); the processes meet
  once at the end (gloo) so that rank 0 writes the summary. ``accelerate launch --cpu
  --num_processes N`` starts a *single* process unless MPI is set up (accelerate's multi-CPU mode
  runs through ``mpirun``): the run says so on stderr and does every volume itself; N CPU processes
  come from ``accelerate launch --multi_gpu --num_processes N ... --device cpu`` or ``torchrun``;
* writes ``transmrsr_summary.tsv`` (one row per input: status, seconds, factor, rank, message).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .data import bids
from .fileutil import atomic_write_bytes
from .serving import is_bundled, resolve_model

SUMMARY = "transmrsr_summary.tsv"
COLUMNS = ("input", "output", "status", "rank", "seconds", "factor", "axis", "model", "message")


@dataclass
class DatasetOptions:
    """What ``sr-dataset`` runs with (see ``transmrsr sr-dataset --help``)."""

    suffix: str = "T1w"
    model: str | None = None
    revision: str | None = None
    phi: float | None = None
    fusion: bool | None = None
    device: str | None = None
    batch_size: int = 8
    quiet: bool = False


@dataclass
class Row:
    input: str
    output: str
    status: str  # done | skipped | failed
    rank: int = 0
    seconds: float = 0.0
    factor: float | None = None
    axis: int | None = None
    model: str = ""
    message: str = ""


@dataclass
class Shard:
    """This process's place among the processes of one run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    group: object | None = field(default=None, repr=False)
    note: str = ""  # a launch that asked for several processes but got one (said on stderr)

    @classmethod
    def from_env(cls) -> Shard:
        """``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` as set by torchrun and accelerate launch."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise ValueError("RANK / WORLD_SIZE / LOCAL_RANK in the environment are not integers") from None
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"RANK={rank} does not fit WORLD_SIZE={world}")
        note = ""
        # accelerate's simple launcher sets MASTER_ADDR only when more than one process was asked
        # for; with --cpu and no MPI it then starts one process without RANK / WORLD_SIZE
        if (
            "WORLD_SIZE" not in os.environ
            and "MASTER_ADDR" in os.environ
            and os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1")
        ):
            note = (
                "accelerate launch --cpu started a single process (its multi-CPU mode needs MPI), so this "
                "process does every volume; for N CPU processes use 'accelerate launch --multi_gpu "
                "--num_processes N ... --device cpu' or 'torchrun --nproc_per_node N'"
            )
        return cls(rank=rank, world=world, local_rank=local, note=note)

    def take(self, items: list) -> list:
        return items[self.rank :: self.world]

    def device(self, requested: str | None) -> str:
        """``requested`` (a bare ``cuda`` becomes ``cuda:<LOCAL_RANK>``), else a GPU per process, else the CPU."""
        import torch

        if requested:
            return f"cuda:{self.local_rank}" if requested == "cuda" and self.world > 1 else requested
        if torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return "cpu"

    def start(self) -> None:
        """Join the run's process group (gloo: CPU or GPU) when there are several processes."""
        if self.world == 1:
            return
        import datetime

        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", rank=self.rank, world_size=self.world, timeout=datetime.timedelta(days=7))
        self.group = dist

    def gather(self, rows: list[Row]) -> list[Row] | None:
        """All processes' rows on rank 0 (``None`` elsewhere); the one meeting point of a run."""
        if self.world == 1:
            return rows
        dist = self.group
        parts: list = [None] * self.world
        dist.all_gather_object(parts, [asdict(r) for r in rows])
        dist.destroy_process_group()
        if self.rank != 0:
            return None
        return [Row(**r) for part in parts for r in part]


def model_identity(spec: str | None, factor: int, revision: str | None = None) -> tuple[str, str]:
    """``(name, version)`` of the weights serving ``factor``: the folder's name and the SHA-256 of
    its ``model.safetensors`` (first 16 hex digits), or a Hub repo id and its revision. No
    machine folder is ever named."""
    from .cli import CHECKPOINTS

    folder = Path(resolve_model(spec, factor, bundled_root=CHECKPOINTS, must_exist=False).source)
    if folder.is_dir():
        weights = folder / "model.safetensors"
        version = "sha256:" + bids.sha256_file(weights)[:16] if weights.is_file() else "unknown"
        return folder.name, version
    return str(spec), revision or "main"


class _Models:
    """Models loaded once per served factor (``--model``: one model for every factor)."""

    def __init__(self, opts: DatasetOptions) -> None:
        self.opts = opts
        self.cache: dict[int, object] = {}

    def served(self, factor: float) -> tuple[int, ...]:
        from .cli import BUNDLED_FACTORS

        return BUNDLED_FACTORS if is_bundled(self.opts.model) else (max(1, round(factor)),)

    def get(self, factor: int):
        from .cli import _load_model

        key = factor if is_bundled(self.opts.model) else 0
        if key not in self.cache:
            self.cache[key] = _load_model(self.opts.model, factor, self.opts.revision)
        return self.cache[key]


def _is_done(out: Path, side: Path, want: dict) -> bool:
    """Whether ``out`` is there with a sidecar recording the same input, model, phi and fusion."""
    if not (out.is_file() and side.is_file()):
        return False
    try:
        doc = json.loads(side.read_text())
    except (OSError, ValueError):
        return False
    return all(doc.get(k) == v for k, v in want.items())


def _one(
    root: Path, out_root: Path, rel: Path, opts: DatasetOptions, models: _Models, shard: Shard, device: str
) -> Row:
    """Super-resolve one input (or skip it when done); raises on any problem with it."""
    from .data.io import load_volume
    from .inference import DEFAULT_FUSION, detect_acquisition, plan_serving, super_resolve_acquisition_file

    src = root / rel
    out_rel = bids.derivative_path(rel)
    out, side = out_root / out_rel, bids.sidecar_path(out_root / out_rel)
    row = Row(input=rel.as_posix(), output=out_rel.as_posix(), status="done", rank=shard.rank)
    t0 = time.perf_counter()
    sha = bids.sha256_file(src)
    vol = load_volume(src)
    acq = detect_acquisition(vol)  # the input's sidecar (SliceThickness) gives the gap, as for `sr`
    served = models.served(acq.factor)
    plan = plan_serving(acq, served)
    name, version = model_identity(opts.model, plan.model_factor, opts.revision)
    row.factor, row.axis, row.model = round(acq.factor, 4), acq.axis, name
    model = models.get(plan.model_factor)
    phi = opts.phi if opts.phi is not None else getattr(getattr(model, "config", None), "phi", None)
    phi = None if phi is None else float(phi)
    fusion = bool(DEFAULT_FUSION if opts.fusion is None else opts.fusion)
    want = {"InputSHA256": sha, "ModelName": name, "ModelVersion": version, "Phi": phi, "Fusion": fusion}
    if _is_done(out, side, want):
        row.status, row.seconds = "skipped", round(time.perf_counter() - t0, 2)
        return row
    result = super_resolve_acquisition_file(
        vol,
        out,
        lambda m: model,
        served=served,
        phi=opts.phi,
        fusion=fusion,
        device=device,
        batch_size=opts.batch_size,
        show_progress=False,
    )
    seconds = time.perf_counter() - t0
    doc = bids.sidecar(
        source_rel=rel,
        input_sha256=sha,
        model_name=name,
        model_version=version,
        phi=phi,
        factor=acq.factor,
        extra={
            "ModelFactor": plan.model_factor,
            "ServingStrategy": plan.strategy,
            "ThickAxis": acq.axis,
            "InputVoxelSize": [round(z, 6) for z in acq.zooms],
            "InputSliceThickness": acq.slice_thickness,
            "OutputVoxelSize": [round(z / f, 6) for z, f in zip(acq.zooms, acq.factors)],
            "OutputShape": list(result.sr.shape),
            "Fusion": fusion,
            "Device": device,
            "Rank": shard.rank,
            "ProcessingSeconds": round(seconds, 2),
        },
    )
    atomic_write_bytes(side, (json.dumps(doc, indent=2) + "\n").encode())  # last: marks the output done
    row.seconds = round(seconds, 2)
    return row


def _message(exc: BaseException) -> str:
    from .config import ConfigError
    from .data.io import VolumeError
    from .hub import PretrainedLoadError

    text = " ".join(str(exc).split())
    if isinstance(exc, (VolumeError, ValueError, ConfigError, PretrainedLoadError, OSError)):
        return text
    return f"internal error: {exc.__class__.__name__}: {text}"


def write_summary(path: Path, rows: list[Row]) -> None:
    """The summary TSV (sorted by input), written atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(COLUMNS)
    for r in sorted(rows, key=lambda r: r.input):
        d = asdict(r)
        w.writerow(["n/a" if d[c] is None or d[c] == "" else str(d[c]).replace("\t", " ") for c in COLUMNS])
    atomic_write_bytes(path, buf.getvalue().encode())


def run_dataset(
    root: str | os.PathLike, out: str | os.PathLike, opts: DatasetOptions, shard: Shard | None = None, err=None
) -> list[Row]:
    """Run ``sr-dataset``; returns every process's rows on rank 0, its own rows on the others."""
    err = err or sys.stderr
    root_p, out_p = bids.check_root(root), Path(out)
    if out_p.resolve() == root_p.resolve():
        raise ValueError(
            f"{out}: the derivatives folder must not be the dataset itself; use e.g. {Path(root) / 'derivatives' / 'transmrsr'}"
        )
    inputs = bids.find_inputs(root_p, opts.suffix)
    if not inputs:
        raise ValueError(f"{root}: no sub-*/[ses-*/]anat/*_{opts.suffix}.nii[.gz] files in this BIDS dataset")
    shard = shard or Shard.from_env()
    if shard.note:
        print(f"transmrsr sr-dataset: warning: {shard.note}", file=err, flush=True)
    shard.start()
    device = shard.device(opts.device)
    out_p.mkdir(parents=True, exist_ok=True)
    bids.write_dataset_description(out_p, root_p)
    mine = shard.take(inputs)
    models = _Models(opts)
    rows: list[Row] = []
    for rel in mine:
        try:
            row = _one(root_p, out_p, rel, opts, models, shard, device)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one line per bad volume, the rest goes on
            if os.environ.get("TRANSMRSR_DEBUG"):
                raise
            message = _message(exc)
            for shown in (str(root_p / rel), (root_p / rel).as_posix()):  # the line names the input once
                if message.startswith(shown + ": "):
                    message = message[len(shown) + 2 :]
            print(f"transmrsr sr-dataset: {rel.as_posix()}: {message}", file=err, flush=True)
            row = Row(input=rel.as_posix(), output="", status="failed", rank=shard.rank, message=message)
        if not opts.quiet and row.status != "failed":
            what = f"x{row.factor:g} in {row.seconds:.1f} s" if row.status == "done" else "already done"
            print(f"{row.input}: {row.status} ({what})", flush=True)
        rows.append(row)
    every = shard.gather(rows)
    if every is None:
        return rows  # the other ranks: their own rows; rank 0 writes the summary
    write_summary(out_p / SUMMARY, every)
    if not opts.quiet:
        n = {s: sum(r.status == s for r in every) for s in ("done", "skipped", "failed")}
        print(
            f"{out}: {len(inputs)} input(s) with suffix {opts.suffix}: {n['done']} done, {n['skipped']} skipped "
            f"(already done), {n['failed']} failed, on {shard.world} process(es); summary in {SUMMARY}",
            flush=True,
        )
    return every
