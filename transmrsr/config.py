"""Model configuration: one dataclass, three presets (`tiny`, `small`, `paper`).

All sizes of the network live here; the model code reads them and holds no constants of
its own. Per-level lists are ordered from the finest resolution to the coarsest for the
encoder (``img_size``, ``img_size/2``, ... ``8``) and from the coarsest to the finest for the
decoder (``4``, ``8``, ... ``img_size``), i.e. in the order data flows through each part.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

#: Bumped whenever a saved ``config.json`` can no longer be read by this code.
CONFIG_FORMAT_VERSION = 1


class ConfigError(ValueError):
    """A configuration is inconsistent or comes from an incompatible version."""


class SerializableConfig:
    """``config.json`` round trip and preset lookup shared by the model configs (dataclasses).

    Subclasses set ``MODEL_TYPE``, the tag written into ``config.json`` and checked on reading,
    so a folder of one architecture is never read as another.
    """

    MODEL_TYPE: ClassVar[str]

    @classmethod
    def _preset_values(cls, presets: dict[str, dict[str, Any]], name: str, overrides: dict[str, Any]) -> dict[str, Any]:
        """A copy of preset ``name``'s values; raises :class:`ConfigError` for an unknown preset
        or an override that is not a field."""
        try:
            values = dict(presets[name])
        except KeyError:
            raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(presets)}") from None
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown config field(s): {sorted(unknown)}")
        return values

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["model_type"] = self.MODEL_TYPE
        data["config_format_version"] = CONFIG_FORMAT_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config"):
        """Inverse of :meth:`to_dict`; ``source`` names the file in error messages."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        model_type = data.pop("model_type", None)
        if model_type != cls.MODEL_TYPE:
            raise ConfigError(f"{source}: model_type is {model_type!r}, expected {cls.MODEL_TYPE!r}")
        version = data.pop("config_format_version", None)
        if version != CONFIG_FORMAT_VERSION:
            raise ConfigError(
                f"{source}: config_format_version {version!r} is not supported by this version of "
                f"transmrsr (it reads version {CONFIG_FORMAT_VERSION}); re-save the model with a "
                "matching transmrsr release"
            )
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {unknown} (written by a newer transmrsr?)")
        check_field_types(cls, data, source)
        try:
            return cls(**data).validate()
        except (TypeError, ConfigError) as exc:
            raise ConfigError(f"{source}: {exc}") from None


def check_field_types(cls: type, data: dict[str, Any], source: str = "config") -> None:
    """Refuse values of the wrong JSON type for the dataclass ``cls``'s fields, naming the first.

    Booleans must be JSON ``true`` / ``false`` (never strings such as ``"false"``, which Python
    would read as true), integers must be integers, floats numbers, lists lists of the item type.
    """
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        hint = hints.get(name)
        if hint is not None and not _matches(value, hint):
            advice = " (write true or false, without quotes)" if _mentions(hint, bool) else ""
            raise ConfigError(
                f"{source}: field {name!r} must be {_describe(hint)}, got {json.dumps(value)[:60]}{advice}"
            )


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON-decoded ``value`` fits the type ``hint`` (bool, int, float, str, None,
    unions and ``list`` / ``tuple`` of those)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if not args:
            return True
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):  # list[T], tuple[T, ...]
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(_matches(v, t) for v, t in zip(value, args))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True  # a type this check does not know: left to the dataclass's own validation


def _mentions(hint: Any, kind: type) -> bool:
    return hint is kind or any(_mentions(a, kind) for a in typing.get_args(hint))


def _describe(hint: Any) -> str:
    """A short English name of a type hint, e.g. ``a boolean``, ``a list of integers or null``."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if hint in names:
        return names[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (list, tuple):
        items = [a for a in args if a is not Ellipsis]
        return f"a list of {_describe(items[0]).split(' ', 1)[-1]}s" if items else "a list"
    return getattr(hint, "__name__", str(hint))


@dataclass
class TransMRSRConfig(SerializableConfig):
    """Sizes and switches of the TransMRSR network.

    Attributes:
        img_size: side of the square canvas in pixels (power of two, >= 16); the paper uses 256.
        in_channels: image channels (1: one MRI contrast).
        shallow_dim: channels of the shallow features ``F_s``; equals ``enc_dims[0]`` and the
            decoder's full-resolution channels so that ``F_s + F_d1`` is defined.
        shallow_blocks: residual blocks after the first conv of the shallow extractor.
        enc_dims: channels per encoder level, finest first (``log2(img_size) - 2`` levels,
            resolutions ``img_size .. 8``); patch merging after level i outputs ``enc_dims[i+1]``
            channels and after the last level ``dec_channels[0]`` (the 4x4 bottleneck).
        enc_heads: attention heads per encoder level.
        enc_depth: Swin layers per RSTB (alternating window / shifted window).
        window_size: attention window (pixels) for encoder and decoder; smaller maps use
            their own size and no shift.
        mlp_ratio: hidden size of the transformer MLPs relative to their width.
        style_dim: width of latent / style vectors.
        mapping_layers: layers of the stage-1 mapping MLP (z -> w).
        lr_mlp: learning-rate multiplier of the equalised mapping / latent layers.
        dec_channels: decoder (StyleSwin synthesis) channels per resolution, ``4 .. img_size``.
        dec_heads: decoder heads per resolution; ``None`` means StyleSwin's ``max(c // 32, 4)``
            (kept even, since heads are split between window and shifted-window attention).
        dec_depth: style-modulated Swin blocks per decoder resolution (each takes one latent).
        recon_dim: channels of the reconstruction head.
        recon_blocks: residual blocks in the reconstruction head.
        disc_channels: stage-1 discriminator channels per resolution, ``img_size .. 4``.
        num_centroids: k-means centroids for self-distilled truncation.
        phi: default truncation level used when ``forward`` gets no ``phi`` (1 = none).
        use_generative_prior: stage 2 starts the decoder from the stage-1 generator (w/o GP
            ablation when False: the decoder keeps its random initialisation).
        use_sdt: self-distilled truncation on (w/o SDT ablation when False).
        use_cwss: multi-resolution encoder features modulate the decoder through CWSS
            (w/o MREF ablation when False).
        use_skip: shallow features are added to the decoder output before reconstruction,
            ``H_rec(F_s + F_d1)`` (paper eq. 10; off in the w/o SC ablation).
        use_residual: global residual learning, ``I_SR = I_LR + I_res`` (paper eq. 11); when
            False the reconstruction head outputs ``I_SR`` itself (off in the w/o SC ablation,
            which "directly learns the recovery of HR images", as the authors' ``TGP4``).
        freeze_prior: the decoder (the stage-1 generator's synthesis network) is frozen in
            stage 2: its parameters do not require gradients (Table 4's "frozen GP"; needs
            ``use_generative_prior``).
        position_table: the decoder's fixed sinusoidal position table: ``"styleswin"``
            (StyleSwin's construction, see ``models.styleswin.decoder_position_table``) or
            ``"legacy"`` (the table of the first releases; a ``config.json`` without this field was
            written by them and reads as ``"legacy"``, so their weights keep their outputs).
        drop_path: stochastic-depth rate of the encoder (training only).
        preset: name of the preset this config was made from (informational).
    """

    img_size: int = 256
    in_channels: int = 1
    shallow_dim: int = 8
    shallow_blocks: int = 2
    enc_dims: list[int] = field(default_factory=lambda: [8, 32, 64, 96, 128, 128])
    enc_heads: list[int] = field(default_factory=lambda: [1, 2, 4, 4, 4, 4])
    enc_depth: int = 2
    window_size: int = 4
    mlp_ratio: float = 2.0
    style_dim: int = 128
    mapping_layers: int = 4
    lr_mlp: float = 0.01
    dec_channels: list[int] = field(default_factory=lambda: [128, 128, 128, 96, 64, 32, 8])
    dec_heads: list[int] | None = field(default_factory=lambda: [4, 4, 4, 4, 4, 2, 2])
    dec_depth: int = 2
    recon_dim: int = 16
    recon_blocks: int = 2
    disc_channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 128, 128, 128])
    num_centroids: int = 8
    phi: float = 0.9
    use_generative_prior: bool = True
    use_sdt: bool = True
    use_cwss: bool = True
    use_skip: bool = True
    use_residual: bool = True
    freeze_prior: bool = False
    position_table: str = "styleswin"
    drop_path: float = 0.0
    preset: str = "small"

    MODEL_TYPE: ClassVar[str] = "transmrsr"
    POSITION_TABLES: ClassVar[tuple[str, ...]] = ("styleswin", "legacy")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TransMRSRConfig:
        """As :meth:`SerializableConfig.from_dict`; a config without ``position_table`` predates
        the field, and its weights were trained with the ``"legacy"`` table."""
        if isinstance(data, dict) and "position_table" not in data:
            data = {**data, "position_table": "legacy"}
        return super().from_dict(data, source)

    # ------------------------------------------------------------------ derived sizes
    @property
    def log_size(self) -> int:
        return int(math.log2(self.img_size))

    @property
    def num_enc_levels(self) -> int:
        """Encoder levels at resolutions ``img_size, img_size/2, ..., 8``."""
        return self.log_size - 2

    @property
    def num_dec_layers(self) -> int:
        """Decoder layers at resolutions ``4, 8, ..., img_size``."""
        return self.log_size - 1

    @property
    def num_latents(self) -> int:
        """One latent vector per decoder style input (``dec_depth`` per decoder layer)."""
        return self.num_dec_layers * self.dec_depth

    @property
    def dec_resolutions(self) -> list[int]:
        return [2 ** (i + 2) for i in range(self.num_dec_layers)]

    @property
    def enc_resolutions(self) -> list[int]:
        return [self.img_size // 2**i for i in range(self.num_enc_levels)]

    @property
    def enc_out_dims(self) -> list[int]:
        """Channels after each encoder level's patch merging (resolutions img/2 .. 4)."""
        return list(self.enc_dims[1:]) + [self.dec_channels[0]]

    def resolved_dec_heads(self) -> list[int]:
        if self.dec_heads is not None:
            return list(self.dec_heads)
        return [max(c // 32, 4) for c in self.dec_channels]

    # ------------------------------------------------------------------ validation
    def validate(self) -> TransMRSRConfig:
        """Check that all sizes fit together; raise :class:`ConfigError` naming the field."""
        s = self.img_size
        if s < 16 or s & (s - 1):
            raise ConfigError(f"img_size must be a power of two >= 16, got {s}")
        checks = [
            ("enc_dims", self.enc_dims, self.num_enc_levels),
            ("enc_heads", self.enc_heads, self.num_enc_levels),
            ("dec_channels", self.dec_channels, self.num_dec_layers),
            ("disc_channels", self.disc_channels, self.num_dec_layers),
        ]
        if self.dec_heads is not None:
            checks.append(("dec_heads", self.dec_heads, self.num_dec_layers))
        for name, values, n in checks:
            if len(values) != n:
                raise ConfigError(f"{name} needs {n} entries for img_size={s}, got {len(values)}")
        if self.enc_dims[0] != self.shallow_dim:
            raise ConfigError("enc_dims[0] must equal shallow_dim (the encoder embeds F_s)")
        if self.dec_channels[-1] != self.shallow_dim:
            raise ConfigError("dec_channels[-1] must equal shallow_dim (F_s + F_d1 is summed)")
        for d, h in zip(self.enc_dims, self.enc_heads):
            if d % h:
                raise ConfigError(f"encoder width {d} is not divisible by {h} heads")
        for c, h in zip(self.dec_channels, self.resolved_dec_heads()):
            if h % 2 or (c // 2) % (h // 2) or c % 2:
                raise ConfigError(
                    f"decoder width {c} with {h} heads cannot be split evenly between "
                    "window and shifted-window attention"
                )
        if self.window_size < 2 or self.window_size & (self.window_size - 1):
            raise ConfigError(f"window_size must be a power of two >= 2, got {self.window_size}")
        if not 0.0 <= self.phi <= 1.0:
            raise ConfigError(f"phi must lie in [0, 1], got {self.phi}")
        if self.num_centroids < 1:
            raise ConfigError("num_centroids must be >= 1")
        if self.dec_depth < 1 or self.enc_depth < 1:
            raise ConfigError("enc_depth and dec_depth must be >= 1")
        if self.position_table not in self.POSITION_TABLES:
            raise ConfigError(
                f"position_table must be one of {list(self.POSITION_TABLES)}, got {self.position_table!r}"
            )
        if self.freeze_prior and not self.use_generative_prior:
            raise ConfigError("freeze_prior needs use_generative_prior (a frozen random decoder is no prior)")
        return self

    # ------------------------------------------------------------------ presets
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TransMRSRConfig:
        """Build a config from a preset name (``tiny``, ``small``, ``paper``) plus overrides."""
        values = cls._preset_values(PRESETS, name, overrides)
        if "img_size" in overrides:
            values.update(_per_level_for_canvas(values, int(overrides["img_size"]), set(overrides)))
        values.update(overrides)
        values["preset"] = name
        return cls(**values).validate()


#: Per-level lists and which end holds the finest resolution ("first" or "last").
_LEVEL_FIELDS = {
    "enc_dims": "first",
    "enc_heads": "first",
    "dec_channels": "last",
    "dec_heads": "last",
    "disc_channels": "first",
}


def _per_level_for_canvas(values: dict[str, Any], img_size: int, given: set[str]) -> dict[str, Any]:
    """A preset's per-level lists for a smaller canvas: keep the finest-resolution entries.

    The finest levels fix the cost and the ``shallow_dim`` ties, so a preset at 128 px keeps its
    widths at full resolution and drops its coarsest level. Lists named in ``given`` are left
    alone; a canvas larger than the preset's needs all lists spelled out.
    """
    base_size = int(values.get("img_size", TransMRSRConfig.img_size))
    if img_size == base_size:
        return {}
    if img_size < 16 or img_size & (img_size - 1):
        raise ConfigError(f"img_size must be a power of two >= 16, got {img_size}")
    drop = int(math.log2(base_size)) - int(math.log2(img_size))
    defaults = TransMRSRConfig()
    out: dict[str, Any] = {}
    for name, finest in _LEVEL_FIELDS.items():
        if name in given:
            continue
        levels = values.get(name, getattr(defaults, name))
        if levels is None:
            continue
        if drop < 0:
            raise ConfigError(f"img_size {img_size} is larger than the preset's {base_size}; give {name} explicitly")
        if drop >= len(levels):
            raise ConfigError(f"img_size {img_size} is too small for this preset")
        out[name] = list(levels[drop:]) if finest == "last" else list(levels[: len(levels) - drop])
    return out


PRESETS: dict[str, dict[str, Any]] = {
    # The authors' sizes at 256x256 (see docs/deviations.md): 6 encoder levels 256..8,
    # 14 latents x 512, StyleSwin-256 decoder with channel multiplier 1.
    "paper": dict(
        img_size=256,
        shallow_dim=64,
        shallow_blocks=2,
        enc_dims=[64, 128, 256, 512, 512, 512],
        enc_heads=[16, 16, 16, 16, 8, 4],
        enc_depth=2,
        window_size=8,
        mlp_ratio=4.0,
        style_dim=512,
        mapping_layers=8,
        dec_channels=[512, 512, 512, 512, 256, 128, 64],
        dec_heads=None,
        dec_depth=2,
        recon_dim=64,
        recon_blocks=2,
        disc_channels=[128, 256, 512, 512, 512, 512, 512],
        drop_path=0.1,
    ),
    # The default (the dataclass defaults): same topology; narrow at full resolution (8
    # channels), 4x4 windows and a short MLP, since on a 2-core CPU the full-resolution
    # layers are bound by memory traffic, not arithmetic. A whole 182x218x181 volume runs in
    # about a minute on two CPU cores.
    "small": dict(),
    # For tests: 32x32 canvas, forward + backward well under a second.
    "tiny": dict(
        img_size=32,
        shallow_dim=8,
        shallow_blocks=2,
        enc_dims=[8, 16, 16],
        enc_heads=[2, 2, 2],
        enc_depth=2,
        window_size=4,
        mlp_ratio=2.0,
        style_dim=32,
        mapping_layers=2,
        dec_channels=[32, 32, 16, 8],
        dec_heads=[4, 2, 2, 2],
        dec_depth=2,
        recon_dim=8,
        recon_blocks=1,
        disc_channels=[8, 16, 32, 32],
        num_centroids=4,
    ),
}


# ---------------------------------------------------------------------- training options
def option(default: Any, help: str, *, flag: str | None = None, choices: tuple | None = None, **kw: Any) -> Any:
    """A training option: a dataclass field that is also a command-line flag.

    The field's name gives the flag (``batch_size`` -> ``--batch-size``) unless ``flag`` says otherwise; its
    default, type, ``choices`` and ``help`` are the CLI's (:mod:`transmrsr.options` builds the parsers, the CLI
    commands and the Train tab's job specs from these fields, so an option is declared once, here). A boolean
    whose default is True becomes ``--no-<name>``. Fields made with plain ``field`` or a bare default stay
    library-only (recipe constants such as the loss weights)."""
    meta = {"help": help, "flag": flag, "choices": choices}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass
class TrainCommon:
    """Options shared by both training stages."""

    data: str = option("", "folder of HR .nii / .nii.gz volumes (searched recursively)")
    out: str = option("", "output folder (weights, training_state.pt, log.jsonl)")
    preset: str = option("small", "network preset", choices=("tiny", "small", "paper"))
    # training canvas; None: the preset's (smaller canvases are cheaper)
    img_size: int | None = option(
        None, "training canvas in pixels, a power of two (default: the preset's, 256 for small)"
    )
    batch_size: int = option(6, "slices per step")
    max_steps: int | None = option(None, "stop after this many steps")
    val_fraction: float = option(
        0.2, "share of subjects held out for validation / early stopping; 0: none, train on all"
    )
    seed: int = option(0, "random seed (sampling, augmentation, initialisation)")
    resume: bool = option(False, "continue the run saved in --out")
    checkpoint_every: int = option(200, "steps between checkpoints")
    log_every: int = option(10, "steps between log.jsonl records")
    num_workers: int = 0
    augment: bool = option(True, "flips / transpose / intensity augmentation")

    def model_config(self, **overrides: Any) -> TransMRSRConfig:
        """The network config for this run: the preset at ``img_size`` plus ``overrides``."""
        if self.img_size is not None:
            overrides = {"img_size": self.img_size, **overrides}
        return TransMRSRConfig.from_preset(self.preset, **overrides)


@dataclass
class GANTrainConfig(TrainCommon):
    """Stage 1 (StyleSwin GAN on HR slices of all three planes); StyleSwin's defaults."""

    lr_g: float = option(2e-4, "generator learning rate")
    lr_d: float = option(2e-4, "discriminator learning rate")
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 10.0
    r1_every: int = 16
    ema_decay: float = 0.999
    sample_every: int = option(500, "steps between sample grids (samples/)")
    max_steps: int | None = option(10000, "stop after this many steps")
    # stage 1 has no validation: every volume under ``data`` trains unless a fraction is held out
    val_fraction: float = option(
        0.0, "share of volumes left out of stage 1 (it has no validation loop; default 0: all volumes train)"
    )


#: Stage-2 networks: TransMRSR, or the EDSR-style CNN baseline trained with the same data, loss and schedule.
SR_ARCHS = ("transmrsr", "edsr")
#: The paper's ablations (Tables 3 and 4) as the model-config fields each one sets.
SR_ABLATIONS: dict[str, dict[str, bool]] = {
    # Table 3 "w/o GP": ✗ GP and ✗ SDT: random decoder, no centroids
    "no-gp": {"use_generative_prior": False, "use_sdt": False},
    # Table 3 "w/o SDT"
    "no-sdt": {"use_sdt": False},
    # Table 3 "w/o MREF": no encoder features into the decoder (CWSS off); skip and residual
    # stay, as the table says (the authors' TGP6 drops those too: docs/deviations.md)
    "no-mref": {"use_cwss": False},
    # Table 3 "w/o SC", §4.5.4: no shallow-to-deep skip and no global residual: the network
    # learns the HR image directly (the authors' TGP4)
    "no-sc": {"use_skip": False, "use_residual": False},
    # Table 4 "frozen GP": the pretrained decoder is not fine-tuned in stage 2
    "frozen-gp": {"freeze_prior": True},
}


@dataclass
class SRTrainConfig(TrainCommon):
    """Stage 2 (SR fine-tuning) — paper §3.5 / §4.3."""

    gan: str = option("", "stage-1 output folder (the generative prior and its centroids)")
    init: str = option(
        "",
        "fine-tune this saved SR model (folder or Hub id; same preset, canvas and ablation) instead of starting "
        "from the prior, e.g. checkpoints/transmrsr-small-t1-x4",
    )
    scale: int = option(4, "slice-thickness factor, e.g. 4 or 8")
    thick_axis: int = option(2, "thick axis used to simulate training pairs", flag="--axis")
    profile: str = option("box", "slice profile of the simulated thick slices", choices=("box", "gaussian"))
    epochs: int = option(100, "at most this many epochs")
    lr: float = option(1e-4, "learning rate")
    betas: tuple[float, float] = (0.5, 0.999)
    lr_step_epochs: int = option(30, "halve the learning rate every this many epochs")
    lr_gamma: float = 0.5
    w_l1: float = 1.0
    w_content: float = 0.5
    w_style: float = 0.5
    perceptual: bool = option(True, "the VGG19 content/style terms (off: L1 only)")
    vgg_weights: str | None = option(None, "VGG19 safetensors file or folder (default: timm/vgg19.tv_in1k via the Hub)")
    content_layers: tuple[int, ...] = (2, 4, 7, 10)
    style_layers: tuple[int, ...] = (2, 4, 7, 10)
    early_stop_patience: int = 10
    early_stop_min_delta: float = 0.05
    phi: float | None = option(None, "truncation level used in training (default: the preset's)")
    ablation: str | None = option(
        None,
        "the paper's ablations (docs/deviations.md): no-gp (random decoder, no SDT), no-sdt, no-mref (no CWSS), "
        "no-sc (no skip, no global residual), frozen-gp (Table 4: the pretrained decoder frozen; needs --gan)",
        choices=tuple(SR_ABLATIONS),
    )
    max_val_slices: int = 256
    # a folder of validation volumes (the fixed split of ``prepare-public``); when set, every
    # volume under ``data`` trains and ``val_fraction`` is not used
    val_data: str = option("", "folder of validation volumes (e.g. prepare-public's val/): every --data volume trains")
    # thick-slice acquisitions trained on: "box" (the profile above, no gaps) or "realistic"
    # (box and Gaussian profiles, gaps, quantised inputs: datasets.Acquisition.realistic)
    acquisition: str = option(
        "box",
        "simulated acquisitions: box (--profile, no gaps) or realistic (box and Gaussian profiles, gaps, "
        "8/12-bit inputs)",
        choices=("box", "realistic"),
    )
    # transmrsr | edsr (the CNN baseline: same data, loss and schedule)
    arch: str = option(
        "transmrsr",
        "network: transmrsr (default) or edsr, the CNN baseline trained with the same data, loss and schedule "
        "(--gan and --phi are not used)",
        choices=SR_ARCHS,
    )

    ARCHS: ClassVar[tuple[str, ...]] = SR_ARCHS
    #: The paper's ablations (Tables 3 and 4) as the model-config fields each one sets.
    ABLATIONS: ClassVar[dict[str, dict[str, bool]]] = SR_ABLATIONS
