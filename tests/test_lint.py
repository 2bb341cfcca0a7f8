"""The code style gate: ruff's lint rules and its formatter (pyproject.toml) over the whole repository.

Run inside the suite so that the README's two commands (set-up, ``pytest``) are all a contributor and CI need;
``ruff check --fix .`` and ``ruff format .`` fix most findings."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff")
    cmd = [exe] if exe else [sys.executable, "-m", "ruff"]
    return subprocess.run([*cmd, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_lint_is_clean():
    proc = _ruff("check", "--no-cache", ".")
    assert proc.returncode == 0, (
        f"ruff check found problems (ruff check --fix . fixes many):\n{proc.stdout}{proc.stderr}"
    )


def test_ruff_format_is_clean():
    proc = _ruff("format", "--check", "--no-cache", ".")
    assert proc.returncode == 0, f"files ruff format would change (run ruff format .):\n{proc.stdout}{proc.stderr}"


def test_lint_gate_really_catches_an_unused_import(tmp_path: Path):
    """The gate is not vacuous: the same configuration flags a file with an unused import and bad formatting."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx=1\n")
    config = str(REPO / "pyproject.toml")
    lint = _ruff("check", "--no-cache", "--config", config, str(bad))
    fmt = _ruff("format", "--check", "--no-cache", "--config", config, str(bad))
    assert lint.returncode == 1 and "F401" in lint.stdout
    assert fmt.returncode == 1


# ---------------------------------------------------------------------------- library words, not CLI flags
#: Modules that are the command line: its own messages, and its flags built from the config schema.
COMMAND_LINE = {"cli.py", "options.py"}


def _cli_flags() -> set[str]:
    """Every long flag of every ``transmrsr`` sub-command."""
    import argparse

    from transmrsr.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {o for p in sub.choices.values() for a in p._actions for o in a.option_strings if o.startswith("--")}


def _callee(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _library_strings(path: Path):
    """``(line, text)`` of each string a library module can show to a user: every string literal (f-string parts
    too) except docstrings, whole elements of a list / tuple (a subprocess's argv, a job's command line) and the
    arguments of ``option(...)`` (the config fields the command line's flags and help are built from)."""
    tree = ast.parse(path.read_text(), str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                skip.add(id(body[0].value))
        if isinstance(node, (ast.List, ast.Tuple)):
            skip.update(id(e) for e in node.elts if isinstance(e, ast.Constant))
        if isinstance(node, ast.Call) and _callee(node) == "option":
            skip.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.lineno, node.value


def test_library_messages_name_no_command_line_flag():
    """Library errors, prints and log notes use neutral words; where one names a parameter the user set, the
    command line shows its flag (``transmrsr.errors``, ``transmrsr.cli.error_text``). A whole command line of
    another tool (``accelerate launch ...``, ``torchrun ...``) may quote its own flags."""
    flags = _cli_flags()
    assert {"--axis", "--scale", "--series", "--resume", "--init", "--no-perceptual"} <= flags
    found = []
    for path in sorted((REPO / "transmrsr").rglob("*.py")):
        if path.name in COMMAND_LINE:
            continue
        for line, text in _library_strings(path):
            if "accelerate launch" in text or "torchrun" in text:
                continue
            named = sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text)) & flags)
            if named:
                found.append(f"{path.relative_to(REPO)}:{line}: {', '.join(named)} in {text[:90]!r}")
    assert not found, "library messages that name command-line flags:\n" + "\n".join(found)


def test_flag_scan_is_not_vacuous(tmp_path: Path):
    """The scan sees a flag in an error, an f-string and a print, and skips docstrings and argv lists."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""Use --axis."""\n'
        "def f(a):\n"
        '    """--scale in a docstring."""\n'
        '    run(["x", "--series"])\n'
        '    print(f"pass --resume to {a}")\n'
        '    raise ValueError("--axis must be 0, 1 or 2")\n'
    )
    texts = sorted(t for _, t in _library_strings(bad))
    assert texts == ["--axis must be 0, 1 or 2", "pass --resume to "], texts
