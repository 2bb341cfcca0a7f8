"""The app's settings and shared server objects, in one place.

The environment is read once, when this module is imported (:func:`read_env`); ``app.py``'s command line is
applied over it by :func:`configure`. The tabs read the settings as ``state.NAME`` (never ``from ... import``),
so that what :func:`configure` sets is what every handler sees. See docs/app.md's "Security / public
deployment" section for every setting.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import gradio as gr

from transmrsr.serving import (
    BUNDLED,
    LoadedModel,
    ModelPolicy,
    ModelRegistry,
    SessionRegistry,
    parse_list,
    public_message,
)

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO / "checkpoints"
EXAMPLES = REPO / "examples"
#: What the upload box accepts: NIfTI and a DICOM series zipped (``studio.plan_volume`` / ``run_case``
#: read both; ".gz" because the browser's file dialog matches only the last suffix of ".nii.gz").
UPLOAD_TYPES = [".nii", ".gz", ".zip"]

#: The settings' names (set by read_env, then configure).
SETTINGS = (
    "MAX_UPLOAD",
    "WORK_DIR",
    "ANNOTATIONS_DIR",
    "TRAINING_ENABLED",
    "ADAPT_STEPS",
    "PUBLIC",
    "SESSION_TTL",
    "STUDY_CODE",
    "OPERATOR_CODE",
    "STUDY_OPERATOR",
    "MODELS",
    "SESSIONS",
)
MAX_UPLOAD: str
#: Outputs, one private folder per session under WORK_DIR/sessions; the same folder across restarts, so
#: leftovers of an earlier process are swept by age.
WORK_DIR: Path
#: Reader-study store (SQLite + label NIfTIs); persistent, unlike WORK_DIR. Set by --annotations.
ANNOTATIONS_DIR: Path
#: The Train tab runs jobs and reads server paths: off unless --enable-training or TRANSMRSR_ENABLE_TRAINING=1.
TRAINING_ENABLED: bool
#: Optimiser steps of "Adapt to this scan" (the library's default when unset; small in tests).
ADAPT_STEPS: str
#: A public deployment: only bundled / allow-listed models, study and operator codes required.
PUBLIC: bool
#: Seconds a session's folder and case live without use (and the age at which uploads are deleted).
SESSION_TTL: float
#: Reader study: the code readers enter to save readings (required on a public deployment).
STUDY_CODE: str
#: Reader study: the code that unlocks the pooled summary and the exports.
OPERATOR_CODE: str
#: Local use: the study operator's functions without a code (refused on a public deployment).
STUDY_OPERATOR: bool
#: The models the Model box may load (policy + LRU cache) and the sessions' private folders and cases.
MODELS: ModelRegistry
SESSIONS: SessionRegistry


def model_policy(allowed: tuple[str, ...] = (), cache_size: int | None = None) -> ModelPolicy:
    """The Model box's policy from the settings (env, then flags)."""
    return ModelPolicy(
        bundled_root=CHECKPOINTS,
        public=PUBLIC,
        allowed=tuple(allowed) or parse_list(os.environ.get("TRANSMRSR_ALLOWED_MODELS")),
        default=os.environ.get("TRANSMRSR_MODEL", "").strip() or BUNDLED,
        cache_size=int(cache_size or os.environ.get("TRANSMRSR_MODEL_CACHE", "2")),
    )


def read_env() -> None:
    """Read the settings from the environment (done once, on import)."""
    global MAX_UPLOAD, WORK_DIR, ANNOTATIONS_DIR, TRAINING_ENABLED, ADAPT_STEPS, PUBLIC, SESSION_TTL
    global STUDY_CODE, OPERATOR_CODE, STUDY_OPERATOR, MODELS, SESSIONS
    env = os.environ
    MAX_UPLOAD = env.get("TRANSMRSR_MAX_UPLOAD", "300mb")
    WORK_DIR = Path(env.get("TRANSMRSR_WORK_DIR") or Path(tempfile.gettempdir()) / "transmrsr-app")
    ANNOTATIONS_DIR = Path(env.get("TRANSMRSR_ANNOTATIONS", REPO / "annotations"))
    TRAINING_ENABLED = env.get("TRANSMRSR_ENABLE_TRAINING", "") == "1"
    ADAPT_STEPS = env.get("TRANSMRSR_ADAPT_STEPS", "")
    PUBLIC = env.get("TRANSMRSR_PUBLIC", "") == "1"
    SESSION_TTL = float(env.get("TRANSMRSR_SESSION_TTL", "3600"))
    STUDY_CODE = env.get("TRANSMRSR_STUDY_CODE", "")
    OPERATOR_CODE = env.get("TRANSMRSR_OPERATOR_CODE", "")
    STUDY_OPERATOR = env.get("TRANSMRSR_STUDY_OPERATOR", "") == "1"
    MODELS = ModelRegistry(model_policy())
    SESSIONS = SessionRegistry(WORK_DIR / "sessions", ttl_s=SESSION_TTL)


def configure(args: argparse.Namespace) -> None:
    """Apply app.py's command line over the environment's settings."""
    global ANNOTATIONS_DIR, TRAINING_ENABLED, PUBLIC, SESSION_TTL, STUDY_OPERATOR, MODELS, SESSIONS
    if args.annotations:
        ANNOTATIONS_DIR = Path(args.annotations)
    PUBLIC = PUBLIC or args.public
    if PUBLIC and (TRAINING_ENABLED or args.enable_training):
        raise SystemExit("app.py: --enable-training is refused on a public deployment (it reads server paths)")
    TRAINING_ENABLED = TRAINING_ENABLED or args.enable_training
    STUDY_OPERATOR = STUDY_OPERATOR or args.study_operator
    if args.session_ttl:
        SESSION_TTL = float(args.session_ttl)
    if args.model_cache is not None and args.model_cache < 1:
        raise SystemExit("app.py: --model-cache must be at least 1")
    MODELS = ModelRegistry(model_policy(tuple(args.allow_model), args.model_cache))
    SESSIONS = SessionRegistry(WORK_DIR / "sessions", ttl_s=SESSION_TTL)


read_env()

try:  # GPU on a Hugging Face ZeroGPU Space; plain CUDA or CPU elsewhere
    import spaces  # type: ignore

    gpu = spaces.GPU
except ImportError:  # pragma: no cover - the usual case off Spaces

    def gpu(fn):
        return fn


# ---------------------------------------------------------------------------------------- shared by the tabs
def user_error(exc: BaseException | str) -> gr.Error:
    """A message for the page: the problem, never a server path."""
    return gr.Error(public_message(str(exc)))


def get_model(spec: str, factor: int) -> LoadedModel:
    """The model ``spec`` names for ``factor`` (checked against the policy, loaded once, LRU)."""
    try:
        return MODELS.get(spec, int(factor))
    except ValueError as exc:  # ModelNotAllowed, FactorNotServed, a folder without weights
        raise user_error(exc) from None


def session_id(request: gr.Request | None) -> str:
    """The session's key (the Gradio session hash; API clients have one too)."""
    return (getattr(request, "session_hash", None) or "no-session") if request is not None else "no-session"


def case_of(ref):
    """The session's case behind the page's reference (None: no run, or a closed session)."""
    return SESSIONS.case(ref) if isinstance(ref, str) else None


def model_of(case, model_spec):
    """The model that made ``case`` (for φ previews and comparisons): the same factor, same Model box."""
    return get_model(model_spec, case.factor).model
