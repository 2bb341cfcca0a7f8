"""Background training jobs for the app's Train tab (no Gradio here).

A :class:`JobManager` runs one ``python -m transmrsr train-gan | fit-centroids | train-sr``
command at a time as a subprocess in its own process group, its stdout and stderr going to
``job.log`` in the job's folder. It reports the job's state (running / finished / stopped /
failed with the exit code), stops it (SIGTERM to the group: the run saves ``training_state.pt``
and exits; SIGKILL if it has not ended after a timeout), resumes it (the same command with
``--resume``), and reads the text log's tail and the run's ``log.jsonl`` records. A failing job
never raises in the caller: its state says "failed (exit N)" and the tail says why.

Each stage is described by a small dataclass (:class:`Stage1Spec`, :class:`CentroidSpec`,
:class:`Stage2Spec`) that validates its options and builds the command line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .config import SR_ABLATIONS, GANTrainConfig, SRTrainConfig
from .options import to_args

JOB_LOG = "job.log"
JOB_INFO = "job.json"
STATE_NAME = "training_state.pt"  # as in training.common (not imported: that pulls in torch)
LOG_NAME = "log.jsonl"
PRESETS = ("tiny", "small", "paper")
#: loss-like fields of the step records of both stages, in plotting order
LOSS_KEYS = ("loss_g", "loss_d", "r1", "loss", "l1", "content", "style")
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


class JobError(ValueError):
    """A job cannot be started, stopped or resumed; the message says why (for the user)."""


# ------------------------------------------------------------------------------------- specs
def _path(value: str | os.PathLike | None) -> Path | None:
    text = str(value or "").strip()
    return Path(text).expanduser().resolve() if text else None


def _volumes(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith((".nii", ".nii.gz")))


def _check_data(value: str) -> Path:
    folder = _path(value)
    if folder is None:
        raise JobError("give a data folder (HR .nii / .nii.gz volumes, searched recursively)")
    if not folder.is_dir():
        raise JobError(f"{folder}: no such data folder")
    if not _volumes(folder):
        raise JobError(f"{folder}: holds no .nii / .nii.gz volumes")
    return folder


def _architecture(folder: Path) -> str | None:
    """The ``architecture`` a weights folder's ``config.json`` names (None: not a weights folder)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not (folder / "model.safetensors").is_file() or not isinstance(config, dict):
        return None
    return str(config.get("architecture") or "unknown")


def _check_stage1_folder(value: str, purpose: str) -> Path:
    folder = _path(value)
    if folder is None:
        raise JobError(f"give the stage-1 output folder ({purpose})")
    if not folder.is_dir():
        raise JobError(f"{folder}: no such stage-1 folder")
    arch = _architecture(folder)
    if arch is None:
        raise JobError(f"{folder}: no stage-1 weights here (config.json + model.safetensors); run stage 1 first")
    if arch not in ("StyleSwinGenerator", "unknown"):
        raise JobError(f"{folder}: holds a {arch}, not a stage-1 generator (StyleSwinGenerator)")
    return folder


def _positive(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise JobError(f"{name} must be a whole number >= 1, got {value!r}")


@dataclass
class _TrainSpec:
    """Options shared by both training stages (the CLI's names, without the dashes)."""

    data: str = ""
    out: str = ""
    preset: str = "small"
    img_size: int | None = None
    batch_size: int = 6
    max_steps: int | None = None
    log_every: int = 10
    checkpoint_every: int = 200
    seed: int = 0

    stage: ClassVar[str] = ""
    command: ClassVar[str] = ""
    resumable: ClassVar[bool] = True

    @property
    def folder(self) -> Path:
        """Where the job writes (weights, log.jsonl, job.log)."""
        folder = _path(self.out)
        if folder is None:
            raise JobError("give an output folder")
        return folder

    def validate(self, resume: bool = False) -> None:
        """Raise :class:`JobError` with a message for the user if the job cannot run."""
        _check_data(self.data)
        out = self.folder
        if out.exists() and not out.is_dir():
            raise JobError(f"{out}: exists and is not a folder")
        if resume and not (out / STATE_NAME).is_file():
            raise JobError(f"{out}: no {STATE_NAME} to resume from; start the run instead")
        if not resume and (out / STATE_NAME).exists():
            raise JobError(f"{out}: a run already lives here ({STATE_NAME}); resume it or choose another output folder")
        if self.preset not in PRESETS:
            raise JobError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.img_size is not None:
            s = self.img_size
            if not isinstance(s, int) or s < 16 or s & (s - 1):
                raise JobError(f"canvas size must be a power of two >= 16, got {s!r}")
        _positive("batch size", self.batch_size)
        _positive("max steps", self.max_steps, allow_none=True)
        _positive("log every", self.log_every)
        _positive("checkpoint every", self.checkpoint_every)

    #: The training config the job's command stands for (its flags come from that config's fields).
    CONFIG: ClassVar[type] = type(None)

    def config(self) -> Any:
        """This job as the training config the CLI builds (paths resolved; the spec's other fields by name)."""
        names = {f.name for f in dataclasses.fields(self.CONFIG)}
        values = {k: v for k, v in dataclasses.asdict(self).items() if k in names}
        values.update(data=str(_path(self.data)), out=str(self.folder))
        for key in ("gan", "vgg_weights"):
            if key in values and _path(values[key]) is not None:
                values[key] = str(_path(values[key]))
        return self.CONFIG(**values)

    def args(self) -> list[str]:
        """``transmrsr`` arguments that run this job: the command, then the config's non-default options."""
        return [self.command, *to_args(self.config())]


@dataclass
class Stage1Spec(_TrainSpec):
    """Stage 1: the StyleSwin generative prior (``transmrsr train-gan``)."""

    max_steps: int | None = 10000
    sample_every: int = 500

    stage: ClassVar[str] = "stage 1"
    command: ClassVar[str] = "train-gan"
    CONFIG: ClassVar[type] = GANTrainConfig

    def validate(self, resume: bool = False) -> None:
        super().validate(resume)
        if self.max_steps is None:
            raise JobError("stage 1 needs max steps (it has no epochs to stop after)")
        if not isinstance(self.sample_every, int) or self.sample_every < 0:
            raise JobError(f"sample every must be a whole number >= 0, got {self.sample_every!r}")


@dataclass
class CentroidSpec:
    """Fit the truncation centroids of a stage-1 generator (``transmrsr fit-centroids``)."""

    gan: str = ""
    num_samples: int = 60000
    clusters: int | None = None
    seed: int = 0

    stage: ClassVar[str] = "centroid fit"
    command: ClassVar[str] = "fit-centroids"
    resumable: ClassVar[bool] = False
    max_steps: ClassVar[None] = None

    @property
    def folder(self) -> Path:
        folder = _path(self.gan)
        if folder is None:
            raise JobError("give the stage-1 output folder whose generator gets the centroids")
        return folder

    def validate(self, resume: bool = False) -> None:
        if resume:
            raise JobError("a centroid fit has no saved state to resume; start it again")
        _check_stage1_folder(self.gan, "its generator gets the centroids")
        _positive("number of samples", self.num_samples)
        _positive("clusters", self.clusters, allow_none=True)

    def args(self) -> list[str]:
        a = [self.command, "--gan", str(self.folder), "--num-samples", str(self.num_samples), "--seed", str(self.seed)]
        if self.clusters is not None:
            a += ["--clusters", str(self.clusters)]
        return a


@dataclass
class Stage2Spec(_TrainSpec):
    """Stage 2: super-resolution fine-tuning (``transmrsr train-sr``)."""

    gan: str = ""
    scale: int = 4
    epochs: int = 100
    lr: float = 1e-4
    perceptual: bool = True
    val_fraction: float = 0.2
    ablation: str | None = None
    vgg_weights: str | None = None

    stage: ClassVar[str] = "stage 2"
    command: ClassVar[str] = "train-sr"
    CONFIG: ClassVar[type] = SRTrainConfig
    ABLATIONS: ClassVar[tuple[str, ...]] = tuple(SR_ABLATIONS)

    def validate(self, resume: bool = False) -> None:
        super().validate(resume)
        if self.ablation is not None and self.ablation not in self.ABLATIONS:
            raise JobError(f"unknown ablation {self.ablation!r}; choose one of {', '.join(self.ABLATIONS)}")
        if self.ablation != "no-gp" or _path(self.gan) is not None:
            _check_stage1_folder(self.gan, "the generative prior stage 2 starts from")
        if not isinstance(self.scale, int) or self.scale < 2:
            raise JobError(f"scale must be a whole number >= 2, got {self.scale!r}")
        _positive("epochs", self.epochs)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise JobError(f"learning rate must be > 0, got {self.lr!r}")
        if not 0 <= self.val_fraction < 1:
            raise JobError(f"validation fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.vgg_weights and _path(self.vgg_weights) is not None and not _path(self.vgg_weights).exists():
            raise JobError(f"{_path(self.vgg_weights)}: no such VGG19 weights file or folder")


# ------------------------------------------------------------------------------------- records
def parse_records(data: bytes) -> tuple[list[dict], int]:
    """JSON records of the complete lines of ``data``; returns ``(records, bytes consumed)``.

    A last line without its newline (being written) is left for the next read; lines that are
    not JSON objects are skipped.
    """
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out, end


def read_records(path: str | os.PathLike, offset: int = 0) -> list[dict]:
    """All records of a ``log.jsonl`` from byte ``offset`` (a half-written last line is ignored)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return []
    records, _ = parse_records(data)
    return records


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def loss_curves(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """``{series: [(step, value), ...]}``: the losses of the step records and, for stage 2, the
    validation PSNR of the epoch records (``val_psnr``). Series without a value are left out."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        step = r.get("step")
        if not isinstance(step, int):
            continue
        if "event" not in r:
            for key in LOSS_KEYS:
                v = _number(r.get(key))
                if v is not None:
                    curves.setdefault(key, []).append((step, v))
        elif r.get("event") == "epoch":
            v = _number(r.get("val_psnr"))
            if v is not None:
                curves.setdefault("val_psnr", []).append((step, v))
    return curves


def curve_table(records: list[dict]) -> list[list]:
    """Long-format rows ``[step, value, series]`` (e.g. for ``gr.LinePlot`` with x="step",
    y="value", color="series"); no pandas needed."""
    return [[s, v, name] for name, pts in loss_curves(records).items() for s, v in pts]


def loss_figure(records: list[dict], title: str | None = None):
    """A matplotlib ``Figure`` of the loss curves (validation PSNR on a second panel when there
    is any); None when there is nothing to plot yet. Uses no pyplot state (thread-safe)."""
    curves = loss_curves(records)
    losses = {k: v for k, v in curves.items() if k != "val_psnr"}
    if not losses and "val_psnr" not in curves:
        return None
    from matplotlib.figure import Figure

    two = "val_psnr" in curves
    fig = Figure(figsize=(8, 3.2), dpi=90, layout="constrained")
    axes = fig.subplots(1, 2) if two else [fig.subplots()]
    ax = axes[0]
    for name, pts in losses.items():
        ax.plot(
            [p[0] for p in pts], [p[1] for p in pts], label=name, linewidth=1.2, marker="." if len(pts) < 30 else None
        )
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if losses:
        ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    if two:
        pts = curves["val_psnr"]
        axes[1].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color="tab:green")
        axes[1].set_xlabel("step")
        axes[1].set_ylabel("validation PSNR (dB)")
        axes[1].grid(alpha=0.3)
    return fig


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def tail_text(data: bytes, n: int) -> str:
    """The last ``n`` lines of terminal output, carriage returns applied (a progress bar that
    redraws itself shows once, as its latest state)."""
    lines = []
    for raw in data.decode("utf-8", errors="replace").split("\n"):
        parts = [p for p in raw.split("\r") if p.strip()]
        lines.append(parts[-1].rstrip() if parts else "")
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines[-n:]) if n > 0 else ""


# ------------------------------------------------------------------------------------- jobs
@dataclass
class JobStatus:
    """What the job is doing; ``label`` is the state for people (e.g. "failed (exit 2)")."""

    state: str  # idle | running | stopping | finished | stopped | failed
    label: str
    stage: str | None = None
    folder: Path | None = None
    command: list[str] = field(default_factory=list)
    exit_code: int | None = None
    step: int | None = None
    total: int | None = None
    it_s: float | None = None
    eta_s: float | None = None
    message: str = ""
    pid: int | None = None

    @property
    def running(self) -> bool:
        return self.state in ("running", "stopping")

    def progress_text(self) -> str:
        """``step 12 / 100 (12%) · 3.2 it/s · ETA 28 s`` (parts that are unknown are left out)."""
        if self.step is None:
            return ""
        parts = [f"step {self.step}" + (f" / {self.total} ({100 * self.step / self.total:.0f}%)" if self.total else "")]
        if self.it_s:
            parts.append(f"{self.it_s:.2f} it/s")
        if self.running and self.eta_s is not None:
            parts.append(f"ETA {format_duration(self.eta_s)}")
        return " · ".join(parts)


@dataclass
class Job:
    spec: Any
    command: list[str]
    proc: subprocess.Popen
    folder: Path
    stop_requested: float | None = None
    killed: bool = False
    records: list[dict] = field(default_factory=list)
    read_pos: int = 0


class JobManager:
    """Runs one training job at a time in the background (see the module docstring).

    ``env`` adds to (or, with value None, removes from) the environment the jobs inherit;
    ``stop_timeout`` is how long :meth:`stop` waits after SIGTERM before SIGKILL.
    """

    def __init__(
        self, env: dict[str, str | None] | None = None, python: str = sys.executable, stop_timeout: float = 120.0
    ):
        self.env_extra = dict(env or {})
        self.python = python
        self.stop_timeout = stop_timeout
        self._lock = threading.RLock()
        self._job: Job | None = None
        self._last_spec: Any = None

    # --------------------------------------------------------------- launching
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        pp = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(_PACKAGE_ROOT) + (os.pathsep + pp if pp else "")
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("TRANSMRSR_DEBUG", None)
        for k, v in self.env_extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        return env

    def command_for(self, spec: Any, resume: bool = False) -> list[str]:
        return [self.python, "-m", "transmrsr", *spec.args(), *(["--resume"] if resume else [])]

    def start(self, spec: Any, resume: bool = False) -> JobStatus:
        """Validate ``spec`` and launch it; raises :class:`JobError` if it cannot start (e.g.
        another job is running). Returns the status right after launching."""
        with self._lock:
            if self._job is not None and self._job.proc.poll() is None:
                raise JobError(
                    f"a {self._job.spec.stage} job is already running in {self._job.folder} "
                    f"(pid {self._job.proc.pid}); stop it first — one job at a time"
                )
            spec.validate(resume=resume)
            folder = spec.folder
            orphan = _running_pid(folder)
            if orphan is not None:
                raise JobError(
                    f"{folder}: a job started earlier (pid {orphan}) is still running there, outside this manager; "
                    "wait for it or end that process"
                )
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JobError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from None
            cmd = self.command_for(spec, resume)
            jsonl = folder / LOG_NAME
            offset = 0 if resume or not jsonl.exists() else jsonl.stat().st_size
            log_path = folder / JOB_LOG
            with open(log_path, "ab") as fh:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                fh.write(f"[{stamp}] $ transmrsr {' '.join(cmd[3:])}\n".encode())
                fh.flush()
                try:
                    proc = subprocess.Popen(
                        cmd,
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=self._env(),
                        start_new_session=True,  # its own process group: stop() signals the whole group
                    )
                except OSError as exc:
                    raise JobError(f"cannot launch {cmd[0]}: {exc}") from None
            info = {"pid": proc.pid, "stage": spec.stage, "command": cmd, "resume": resume, "started": time.time()}
            try:
                (folder / JOB_INFO).write_text(json.dumps(info, indent=2) + "\n")
            except OSError:
                pass
            self._job = Job(spec=spec, command=cmd, proc=proc, folder=folder, read_pos=offset)
            self._last_spec = spec
            return self.status()

    def resume(self, spec: Any = None) -> JobStatus:
        """Continue the run saved in ``spec``'s folder (default: the last job's) with ``--resume``."""
        with self._lock:
            spec = spec if spec is not None else self._last_spec
            if spec is None:
                raise JobError("nothing to resume: no job was started here; fill in the form of the stopped run")
            if not spec.resumable:
                raise JobError(f"a {spec.stage} has no saved state to resume; start it again")
            return self.start(spec, resume=True)

    # --------------------------------------------------------------- stopping
    def stop(self, wait: bool = True, timeout: float | None = None) -> JobStatus:
        """SIGTERM the job's process group (the run saves its state and exits); SIGKILL it if it
        has not ended ``timeout`` seconds later. With ``wait`` return once it has ended."""
        timeout = self.stop_timeout if timeout is None else timeout
        with self._lock:
            job = self._job
            if job is None or job.proc.poll() is not None:
                raise JobError("no job is running")
            if job.stop_requested is None:
                job.stop_requested = time.time()
                self._signal(job, signal.SIGTERM)
                threading.Thread(target=self._watchdog, args=(job, timeout), daemon=True).start()
        if wait:
            try:
                job.proc.wait(timeout + 30)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL did not end it
                pass
        return self.status()

    @staticmethod
    def _signal(job: Job, sig: int) -> None:
        try:
            os.killpg(job.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _watchdog(self, job: Job, timeout: float) -> None:
        try:
            job.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            job.killed = True
            self._signal(job, signal.SIGKILL)
            job.proc.wait()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop a running job (for the app's exit)."""
        try:
            self.stop(wait=True, timeout=timeout)
        except JobError:
            pass

    # --------------------------------------------------------------- reading
    @property
    def job(self) -> Job | None:
        return self._job

    def records(self) -> list[dict]:
        """The current job's ``log.jsonl`` records (read incrementally; a half-written last line
        waits for the next call). A resumed run's records include those before the stop."""
        with self._lock:
            job = self._job
            if job is None:
                return []
            try:
                with open(job.folder / LOG_NAME, "rb") as fh:
                    fh.seek(job.read_pos)
                    data = fh.read()
            except FileNotFoundError:
                return []
            new, used = parse_records(data)
            job.records.extend(new)
            job.read_pos += used
            return list(job.records)

    def tail(self, n: int = 40, max_bytes: int = 256 * 1024) -> str:
        """The last ``n`` lines of the current job's ``job.log`` (progress-bar redraws collapsed)."""
        job = self._job
        if job is None:
            return ""
        path = job.folder / JOB_LOG
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - max_bytes))
                data = fh.read()
        except FileNotFoundError:
            return ""
        return tail_text(data, n)

    def status(self) -> JobStatus:
        with self._lock:
            job = self._job
            if job is None:
                return JobStatus(state="idle", label="no job")
            rc = job.proc.poll()
            records = self.records()
            events = [r.get("event") for r in records if r.get("event") in ("done", "stopped", "early_stop_done")]
            last_event = events[-1] if events else None
            signame = _signal_name(-rc) if rc is not None and rc < 0 else ""
            message = ""
            if rc is None:
                state = "stopping" if job.stop_requested else "running"
                label = "stopping (saving its state)" if job.stop_requested else "running"
            elif rc == 0 and last_event == "stopped":
                state, label = "stopped", "stopped (state saved; Resume continues it)"
            elif rc == 0:
                state, label = "finished", "finished"
            elif job.stop_requested and rc < 0:
                state = "stopped"
                label = f"stopped ({signame}{' after the timeout' if job.killed else ''}; the last checkpoint is kept)"
            else:
                state = "failed"
                label = f"failed (exit {rc})" if rc > 0 else f"failed (killed by {signame})"
                message = _error_line(self.tail(30))
            st = JobStatus(
                state=state,
                label=label,
                stage=job.spec.stage,
                folder=job.folder,
                command=job.command,
                exit_code=rc,
                message=message,
                pid=job.proc.pid,
            )
            steps = [r for r in records if "event" not in r and isinstance(r.get("step"), int)]
            if steps:
                last = steps[-1]
                st.it_s, st.eta_s = _number(last.get("it_s")), _number(last.get("eta_s"))
                # the latest step: a stop or the end may come after the last logged step
                st.step = max(r["step"] for r in records if isinstance(r.get("step"), int))
                total = job.spec.max_steps
                if total is None and st.eta_s is not None and st.it_s:
                    total = int(round(last["step"] + st.eta_s * st.it_s))
                st.total = total
            return st


def _running_pid(folder: Path) -> int | None:
    """The pid in ``folder/job.json`` if that process is alive and still a transmrsr job (e.g. one
    left running by an earlier app process); None otherwise."""
    try:
        pid = int(json.loads((folder / JOB_INFO).read_text())["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid  # no /proc: trust the pid
    return pid if b"transmrsr" in cmdline else None


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _error_line(tail: str) -> str:
    """The line of a failed job's output that says why (the CLI prints one ``error:`` line)."""
    lines = [line for line in tail.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower() or "Traceback" in line:
            return line.strip()
    return lines[-1].strip() if lines else ""


# ------------------------------------------------------------------------------------- models
def model_kind(folder: str | os.PathLike) -> str | None:
    """``"TransMRSR"`` (stage 2, loadable for super-resolution), ``"StyleSwinGenerator"`` (stage 1)
    or None (no weights folder)."""
    p = _path(folder)
    return _architecture(p) if p is not None and p.is_dir() else None


def push_folder_to_hub(
    folder: str | os.PathLike, repo_id: str, token: str | None = None, private: bool | None = None
) -> str:
    """Upload the weights in ``folder`` (stage 1 or 2) to the Hub model repo ``repo_id`` with the
    package's ``push_to_hub``; returns the commit URL. Raises :class:`JobError` with a message
    for the user (no weights, bad repo id, offline, not allowed...)."""
    from .hub import PretrainedLoadError
    from .models import EDSR, StyleSwinGenerator, TransMRSR

    p = _path(folder)
    repo_id = (repo_id or "").strip()
    if p is None:
        raise JobError("no model folder to push; train (or enter) one first")
    kind = model_kind(p)
    if kind is None:
        raise JobError(f"{p}: no weights here (config.json + model.safetensors)")
    if not repo_id or repo_id.count("/") != 1 or any(not part for part in repo_id.split("/")):
        raise JobError(f"Hub repo id must look like owner/name, got {repo_id!r}")
    cls = {"StyleSwinGenerator": StyleSwinGenerator, "EDSR": EDSR}.get(kind, TransMRSR)
    try:
        model = cls.from_pretrained(p)
    except PretrainedLoadError as exc:
        raise JobError(str(exc)) from None
    card = p / "README.md"
    try:
        return model.push_to_hub(
            repo_id,
            token=(token or "").strip() or None,
            private=private,
            model_card=card.read_text() if card.is_file() else None,
        )
    except Exception as exc:  # network, auth, offline mode: say so, never crash the caller
        text = " ".join(str(exc).split()) or exc.__class__.__name__
        hint = ""
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") or "offline" in text.lower():
            hint = " — offline mode is on (HF_HUB_OFFLINE); pushing needs the network"
        elif isinstance(exc, (ConnectionError, OSError, TimeoutError)):
            hint = " — the Hub cannot be reached from here"
        raise JobError(f"push to {repo_id} failed: {exc.__class__.__name__}: {text}{hint}") from None


__all__ = [
    "CentroidSpec",
    "Job",
    "JobError",
    "JobManager",
    "JobStatus",
    "Stage1Spec",
    "Stage2Spec",
    "curve_table",
    "format_duration",
    "loss_curves",
    "loss_figure",
    "model_kind",
    "parse_records",
    "push_folder_to_hub",
    "read_records",
    "tail_text",
]
