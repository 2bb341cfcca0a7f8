"""Training options declared once: the config dataclasses' fields made with :func:`~transmrsr.config.option`.

From those fields come the ``train-gan`` / ``train-sr`` command-line flags (:func:`add_arguments`), the config a
parsed command line stands for (:func:`from_args`) and, the other way, the command line that reproduces a config
(:func:`to_args`, used by the Train tab's job specs in :mod:`transmrsr.jobs`). A new training option is one field
in :mod:`transmrsr.config`; nothing else lists options.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _base_type(hint: Any) -> type:
    """``int | None`` -> ``int``; ``str`` -> ``str``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0]
    return hint


def cli_fields(cls: type) -> list[tuple[dataclasses.Field, type, str]]:
    """``(field, base type, flag)`` of every command-line option of a config dataclass, in declaration order
    (a subclass redefining a field keeps the base class's position, as dataclasses do)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue  # a library-only field (a recipe constant)
        typ = _base_type(hints[f.name])
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        if typ is bool and f.default is True:
            flag = "--no-" + flag[2:]
        out.append((f, typ, flag))
    return out


def add_arguments(parser: argparse.ArgumentParser, cls: type, required: tuple[str, ...] = ()) -> None:
    """Add a flag for every option field of ``cls`` to ``parser``; ``dest`` is the field's name, the default the
    field's default; the names in ``required`` must be given."""
    for f, typ, flag in cli_fields(cls):
        kw: dict[str, Any] = {"dest": f.name, "help": f.metadata["help"]}
        if typ is bool and f.default is True:
            kw["help"] = f"turn off {f.metadata['help']} (on by default)"
        if typ is bool:
            kw["action"] = "store_false" if f.default is True else "store_true"
        else:
            kw["type"] = typ
            if f.metadata.get("choices"):
                kw["choices"] = list(f.metadata["choices"])
            if f.name in required:
                kw["required"] = True
            else:
                kw["default"] = f.default
        parser.add_argument(flag, **kw)


def from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """The config ``cls`` a parsed command line stands for: every option field from ``args`` (a missing or None
    value keeps the field's default), then ``overrides``."""
    values = {}
    for f, _, _ in cli_fields(cls):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    return cls(**{**values, **overrides})


def to_args(config: Any) -> list[str]:
    """The flags that give ``config`` back through :func:`add_arguments` / :func:`from_args`: every option whose
    value differs from its default (and every required one, which has none to differ from), in declaration order.
    Paths are passed as they are; floats with ``repr`` so that they parse back bit-identical."""
    out: list[str] = []
    for f, typ, flag in cli_fields(type(config)):
        value = getattr(config, f.name)
        if value == f.default and f.name not in ("data", "out"):
            continue
        if typ is bool:
            out.append(flag)  # the flag's sense is the non-default value
        elif value is None or value == "":
            continue  # "not given" has no flag; from_args then keeps the default
        else:
            out += [flag, repr(float(value)) if typ is float else str(value)]
    return out
