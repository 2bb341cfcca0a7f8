"""Errors in neutral words, which each front end says in its own names.

An error about a value the caller gave names that value by the library's own parameter name
(``axis``, ``scale``, ``series``, ``init``, ``resume``, ...) as a ``{name}`` placeholder in its
message, with the neutral words for it in ``params``::

    VolumeError(f"{path}: {{axis}} must be 0, 1 or 2, got {axis}", path=path, params={"axis": "the thick axis"})

``str(exc)`` reads the neutral words ("in.nii.gz: the thick axis must be 0, 1 or 2, got 5"), which
the library and the app show; the command line puts the flag the user typed in their place with
:meth:`NamesParameters.worded` ("in.nii.gz: --axis must be 0, 1 or 2, got 5"). No library message
names a command-line flag (tests/test_lint.py checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


class NamesParameters:
    """Mixin for an exception whose message names the caller's parameters.

    ``message`` holds a ``{name}`` placeholder for each key of ``params``; each is filled with
    its neutral words in ``str(exc)``, or with a front end's name by :meth:`worded`. Placeholders
    are filled by plain replacement (no ``str.format``), so braces elsewhere, e.g. in a path, stay.
    """

    template: str = ""
    params: dict[str, str] = {}

    def __init__(self, message: str = "", *args, params: Mapping[str, str] | None = None, **kwargs) -> None:
        self.template = message
        self.params = dict(params or {})
        super().__init__(self.worded(), *args, **kwargs)

    def worded(self, name: Callable[[str], str | None] | None = None) -> str:
        """The message with each parameter called ``name(parameter)`` (its neutral words where
        ``name`` is not given or returns ``None``)."""
        text = self.template
        for param, words in self.params.items():
            text = text.replace("{" + param + "}", (name(param) if name else None) or words)
        return text


class ParameterError(NamesParameters, ValueError):
    """A value the caller gave cannot be used; the message says which (see :class:`NamesParameters`)."""
