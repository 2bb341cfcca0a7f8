"""Which weights serve a request (:func:`resolve_model`, the CLI's and the app's), and serving the app to
anonymous users: which models may load, a bounded model cache, private per-session folders that are cleaned
up, and error messages without server paths.

No Gradio in here: the app (``app.py``, ``appui/``) calls these classes from its event functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The model spec that means "the weights bundled in ``checkpoints/`` for the request's factor" (so does "").
BUNDLED = "bundled"
#: The bundled weights: one folder per factor, ``transmrsr-small-t1-x{factor}`` (model cards: their README.md).
BUNDLED_ROOT = Path(__file__).resolve().parents[1] / "checkpoints"
#: The Model box value that means "the operator's default model" (its location is not shown).
DEFAULT = "default"
#: Factors a model that is not bundled may be asked for (its training factor is not recorded).
CUSTOM_FACTORS = tuple(range(2, 9))
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_ABS_PATH = re.compile(r"(?<![\w.~])(?:[A-Za-z]:)?[/\\](?:[^\s:'\"`()\[\],;]+[/\\])*([^\s:'\"`()\[\],;/\\]*)")


class ModelNotAllowed(ValueError):
    """The Model box names something this server does not serve."""


class FactorNotServed(ValueError):
    """No model of this server is made for the upload's thick-slice factor."""


def public_message(text: str) -> str:
    """``text`` with every absolute path replaced by its last part (a file name says what is meant;
    the folders it lives in are the server's business)."""
    return _ABS_PATH.sub(lambda m: m.group(1) or "(folder)", str(text))


def is_repo_id(spec: str) -> bool:
    """Whether ``spec`` has the form of a Hugging Face repo id (``owner/name``)."""
    return bool(_REPO_ID.match(spec)) and ".." not in spec


def parse_list(value: str | None) -> tuple[str, ...]:
    """Comma / whitespace separated items of an env variable or flag, empty ones dropped."""
    return tuple(v for v in re.split(r"[\s,]+", value or "") if v)


@dataclass(frozen=True)
class ResolvedModel:
    """The weights that serve a request, before anything is loaded.

    Attributes:
        source: what ``from_pretrained`` reads: a weights folder or a Hub repo id.
        name: how results name the model: the folder's last part, or the repo id.
        bundled: the bundled weights (``source`` is their folder for the factor).
        key: the same weights, the same key (``bundled@x4``; otherwise the spec).
    """

    source: str
    name: str
    bundled: bool
    key: str


def is_bundled(spec: str | None) -> bool:
    """Whether a model spec names the bundled weights (``None``, ``""`` or ``"bundled"``)."""
    return (spec or "").strip() in ("", BUNDLED)


def bundled_dir(factor: int, root: str | Path | None = None) -> Path:
    """The bundled weights' folder for ``factor`` (under ``root``, default :data:`BUNDLED_ROOT`)."""
    return Path(BUNDLED_ROOT if root is None else root) / f"transmrsr-small-t1-x{int(factor)}"


def resolve_model(
    spec: str | None, scale: int, *, bundled_root: str | Path | None = None, must_exist: bool = True
) -> ResolvedModel:
    """The weights a model ``spec`` names for a factor-``scale`` request: ``None``, ``""`` or ``"bundled"``:
    the bundled folder for ``scale``; anything else (a weights folder, a Hub repo id) as given, for any factor.

    No policy (the app's public allow-list is :class:`ModelPolicy`'s) and nothing is loaded. With
    ``must_exist``, bundled weights missing for ``scale`` raise :class:`FactorNotServed`, in words that name
    no folder (callers say what the user can do instead: the CLI names ``--model``)."""
    s = (spec or "").strip()
    if is_bundled(s):
        folder = bundled_dir(scale, bundled_root)
        if must_exist and not (folder / "model.safetensors").is_file():
            raise FactorNotServed(f"no bundled weights for x{int(scale)} in this installation")
        return ResolvedModel(source=str(folder), name=folder.name, bundled=True, key=f"{BUNDLED}@x{int(scale)}")
    name = s if is_repo_id(s) and not Path(s).exists() else Path(s).name or s
    return ResolvedModel(source=s, name=name, bundled=False, key=s)


def state_version(model: Any) -> str:
    """A short fingerprint of a model's weights (SHA-256 of its state dict, 12 hex digits):
    readings made with different weights under the same name stay apart."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


@dataclass
class ModelPolicy:
    """What the Model box accepts.

    Attributes:
        bundled_root: folder of the bundled ``transmrsr-small-t1-x{r}`` weights.
        public: a public deployment: only ``bundled``, ``default`` and ``allowed`` repo ids load.
        allowed: Hub repo ids the operator allows on a public deployment.
        default: the operator's default model (``TRANSMRSR_MODEL``), always allowed.
        cache_size: models kept loaded at once (least recently used dropped first).
    """

    bundled_root: Path
    public: bool = False
    allowed: tuple[str, ...] = ()
    default: str = BUNDLED
    cache_size: int = 2

    def bundled_factors(self) -> tuple[int, ...]:
        """The factors with bundled weights present, e.g. ``(4, 8)``."""
        root = Path(self.bundled_root)
        found = []
        for p in root.glob("transmrsr-small-t1-x*") if root.is_dir() else []:
            tail = p.name.rsplit("-x", 1)[-1]
            if tail.isdigit() and (p / "model.safetensors").is_file():
                found.append(int(tail))
        return tuple(sorted(found))


@dataclass
class LoadedModel:
    """A model in the cache with what a reading records about it."""

    key: str
    name: str
    version: str
    source: str
    model: Any
    bundled: bool


class ModelRegistry:
    """Resolves the Model box against a :class:`ModelPolicy` and keeps at most
    ``policy.cache_size`` models loaded (LRU)."""

    def __init__(self, policy: ModelPolicy, loader=None) -> None:
        self.policy = policy
        self._loader = loader
        self._cache: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.RLock()

    def spec_of(self, spec: str | None) -> str:
        """The Model box value, empty or ``default`` meaning the operator's default."""
        s = (spec or "").strip()
        return self.policy.default or BUNDLED if s in ("", DEFAULT) else s

    def box_value(self) -> str:
        """What the Model box shows first: the default's name, or ``default`` where that name would
        show a server folder to a public deployment's users."""
        d = self.policy.default or BUNDLED
        return d if d == BUNDLED or not self.policy.public or is_repo_id(d) and not Path(d).exists() else DEFAULT

    def check_spec(self, spec: str | None) -> str:
        """``spec`` normalised, or ModelNotAllowed on a public deployment for anything but the
        bundled weights, the operator's default and the allow-listed repo ids."""
        s = self.spec_of(spec)
        if len(s) > 200:
            raise ModelNotAllowed("the model name is too long (200 characters at most)")
        if not self.policy.public or s in (BUNDLED, self.policy.default):
            return s
        if s in self.policy.allowed and is_repo_id(s):
            return s
        extra = [DEFAULT] if (self.policy.default or BUNDLED) != BUNDLED else []
        allowed = ", ".join([BUNDLED, *extra, *[a for a in self.policy.allowed if is_repo_id(a)]])
        raise ModelNotAllowed(
            f"model {public_message(s)!r} is not served here: this public server loads only {allowed}"
        )

    def check(self, spec: str | None, factor: int) -> tuple[str, str, str, bool]:
        """``(cache key, source, display name, bundled)`` of the model for ``factor``, checked
        without loading anything (ModelNotAllowed, FactorNotServed)."""
        s = self.check_spec(spec)
        factor = int(factor)
        if s == BUNDLED:
            served = self.policy.bundled_factors()
            if factor not in served:
                have = " and ".join(f"×{f}" for f in served) or "no factor (no weights installed)"
                raise FactorNotServed(
                    f"a ×{factor} thick-slice factor is not served: the bundled weights are for {have} "
                    "(slice thickness that many times the in-plane spacing)"
                )
        elif factor not in CUSTOM_FACTORS:
            raise FactorNotServed(
                f"a ×{factor} thick-slice factor is not served: factors {CUSTOM_FACTORS[0]} to {CUSTOM_FACTORS[-1]} "
                "are accepted"
            )
        r = resolve_model(s, factor, bundled_root=self.policy.bundled_root)
        return r.key, r.source, r.name, r.bundled

    def served_for(self, spec: str | None, factor: float) -> tuple[int, ...]:
        """The integer factors of the models that may serve a thick-slice factor ``factor`` (any
        value from 1.5 to 10, see :func:`transmrsr.inference.plan_serving`): every bundled factor
        for the bundled weights; for another model, whose training factor is not recorded, only its
        own integer factor ``round(factor)`` (FactorNotServed outside ``CUSTOM_FACTORS``)."""
        s = self.check_spec(spec)
        if s == BUNDLED:
            served = self.policy.bundled_factors()
            if not served:
                raise FactorNotServed(f"a ×{factor:.3g} thick-slice factor is not served: no weights are installed")
            return served
        own = max(1, int(round(float(factor))))
        if own not in CUSTOM_FACTORS:
            raise FactorNotServed(
                f"a ×{factor:.3g} thick-slice factor is not served by this model: a model that is not bundled runs "
                f"only at its own integer factor, {CUSTOM_FACTORS[0]} to {CUSTOM_FACTORS[-1]}"
            )
        return (own,)

    def get(self, spec: str | None, factor: int) -> LoadedModel:
        """The loaded model for ``spec`` and ``factor`` (loaded on first use; the least recently used
        one is dropped when the cache is full)."""
        key, source, name, bundled = self.check(spec, factor)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        model = self._load(source)
        entry = LoadedModel(
            key=key, name=name, version=state_version(model), source=source, model=model, bundled=bundled
        )
        with self._lock:
            self._cache[key] = entry
            self._cache.move_to_end(key)
            while len(self._cache) > max(1, int(self.policy.cache_size)):
                self._cache.popitem(last=False)
        return entry

    def _load(self, source: str):
        if self._loader is not None:
            return self._loader(source)
        from .hub import PretrainedLoadError
        from .models import TransMRSR

        try:
            return TransMRSR.from_pretrained(source)
        except PretrainedLoadError as exc:
            raise ModelNotAllowed(public_message(str(exc))) from None

    def loaded(self) -> list[LoadedModel]:
        """The models in the cache, most recently used last."""
        with self._lock:
            return list(self._cache.values())

    def loaded_entry(self, spec: str | None, factor: int) -> LoadedModel | None:
        """The cached model ``spec`` would use at ``factor``, or None (nothing is loaded or checked
        beyond the policy)."""
        try:
            key = self.check(spec, factor)[0]
        except ValueError:
            return None
        with self._lock:
            return self._cache.get(key)

    def forget(self, source: str) -> None:
        """Drop a model from the cache (its weights changed on disk)."""
        with self._lock:
            for key in [k for k, v in self._cache.items() if v.source.rstrip("/") == str(source).rstrip("/")]:
                del self._cache[key]


class SessionRegistry:
    """One private folder per browser session under ``root`` (named by an unguessable token, never
    by the upload) and the session's current case; closed on session end or after ``ttl_s``
    seconds without use. Folders left by an earlier process are removed once older than
    ``ttl_s``."""

    def __init__(self, root: str | Path, ttl_s: float = 3600.0) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ttl_s = float(ttl_s)
        self._sessions: dict[str, dict] = {}
        self._refs: dict[str, str] = {}
        self._lock = threading.RLock()

    def folder(self, sid: str) -> Path:
        """The session's private folder (created on first use)."""
        with self._lock:
            entry = self._sessions.get(sid)
            if entry is None:
                path = self.root / secrets.token_urlsafe(18)
                path.mkdir(mode=0o700)
                entry = self._sessions[sid] = {"folder": path, "cases": {}, "used": time.time(), "uploads": set()}
            entry["used"] = time.time()
            entry["folder"].mkdir(mode=0o700, parents=True, exist_ok=True)
            return entry["folder"]

    def set_case(self, sid: str, case: Any) -> str:
        """Keep ``case`` as the session's current one (an earlier one is freed); returns its
        unguessable reference, the only thing the browser holds."""
        self.folder(sid)
        ref = secrets.token_urlsafe(18)
        with self._lock:
            entry = self._sessions[sid]
            for old in entry["cases"]:
                self._refs.pop(old, None)
            entry["cases"] = {ref: case}
            self._refs[ref] = sid
        return ref

    def note_upload(self, sid: str, path: str | Path, upload_root: str | Path) -> bool:
        """Remember a file the session uploaded into the server's upload cache ``upload_root``, so
        that closing the session deletes it (files elsewhere, e.g. the bundled examples, are never
        recorded). Returns whether it was recorded."""
        p, root = Path(path).resolve(), Path(upload_root).resolve()
        if not p.is_relative_to(root) or p == root:
            return False
        self.folder(sid)
        with self._lock:
            self._sessions[sid]["uploads"].add(p)
        return True

    def case(self, ref: str | None) -> Any:
        """The case behind ``ref`` (None when unknown or its session has closed)."""
        with self._lock:
            sid = self._refs.get(ref or "")
            if sid is None:
                return None
            entry = self._sessions[sid]
            entry["used"] = time.time()
            return entry["cases"].get(ref)

    def drop_case(self, sid: str) -> None:
        """Free the session's case (a new upload makes it stale), keep its folder."""
        with self._lock:
            entry = self._sessions.get(sid)
            if entry:
                for ref in entry["cases"]:
                    self._refs.pop(ref, None)
                entry["cases"] = {}

    def close(self, sid: str) -> None:
        """End a session: free its case, delete its folder and the uploads it made."""
        with self._lock:
            entry = self._sessions.pop(sid, None)
            if entry is None:
                return
            for ref in entry["cases"]:
                self._refs.pop(ref, None)
            still_used = set().union(*(e.get("uploads", set()) for e in self._sessions.values()))
        shutil.rmtree(entry["folder"], ignore_errors=True)
        for p in entry.get("uploads", ()):
            if p in still_used:  # the upload cache stores identical bytes once: another session has them
                continue
            p.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                p.parent.rmdir()  # the cache's per-file folder, when now empty

    def sessions(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    def sweep(self, now: float | None = None) -> int:
        """Close sessions idle for longer than the TTL and remove folders under ``root`` that no
        session of this process owns and that are older than the TTL. Returns how many went."""
        now = time.time() if now is None else now
        with self._lock:
            stale = [sid for sid, e in self._sessions.items() if now - e["used"] > self.ttl_s]
            owned = {e["folder"].name for sid, e in self._sessions.items() if sid not in stale}
        for sid in stale:
            self.close(sid)
        gone = len(stale)
        for p in self.root.iterdir() if self.root.is_dir() else []:
            try:
                old = now - p.stat().st_mtime > self.ttl_s
            except OSError:
                continue
            if p.name not in owned and old:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                gone += 1
        return gone

    def start_sweeper(self, every_s: float | None = None) -> threading.Thread:
        """Sweep now and then every ``every_s`` seconds (default: a quarter of the TTL, 5 s to
        10 min) in a daemon thread."""
        self.sweep()
        period = every_s or min(max(self.ttl_s / 4, 5.0), 600.0)

        def loop() -> None:
            while True:
                time.sleep(period)
                self.sweep()

        t = threading.Thread(target=loop, name="transmrsr-session-sweeper", daemon=True)
        t.start()
        return t
