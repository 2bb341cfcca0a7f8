"""The documentation names only what is in the repository.

In README.md, CHANGELOG.md, docs/*.md, benchmarks/RESULTS.md, examples/README.md and the model cards
(checkpoints/*/README.md):

* every relative link and image (``[text](path)``, ``![alt](path)``, ``[ref]: path``, ``<img src="path">``) points to
  a file or folder that exists, relative to the document (web links and ``#anchors`` are not checked; a
  ``#fragment`` is cut off);
* every path in backticks (inline or in a fenced block) that starts with a top-level folder of the repository
  (``transmrsr/``, ``benchmarks/``, ``tests/``, ...) exists; ``tests/test_x.py::test_y`` also names a test defined
  there; a glob or placeholder (``*``, ``<...>``, ``{...}``, ``$VAR``) is not checked;
* a backticked test file (``test_x.py``) is in tests/, a backticked test (``test_y``) is defined in one, and a
  backticked dotted name under ``transmrsr.`` imports (a module, or an attribute of one).
"""

from __future__ import annotations

import importlib
import posixpath
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: The documents checked, relative to the repository.
DOCS = sorted(
    {"README.md", "CHANGELOG.md", "benchmarks/RESULTS.md", "examples/README.md"}
    | {p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md")}
    | {p.relative_to(REPO).as_posix() for p in (REPO / "checkpoints").glob("*/README.md")}
)
#: Top-level folders of the repository: a backticked path that starts with one is checked (paths under other
#: names, e.g. DATA/ or runs/ in an example command, are the reader's own).
TOP = ("transmrsr", "appui", "benchmarks", "tests", "docs", "checkpoints", "examples", ".ci")

_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_IMG = re.compile(r"<img\b[^>]*\bsrc=[\"']([^\"']+)[\"']", re.I)
_FENCE = re.compile(r"^\s*(```|~~~)[^\n]*\n(.*?)^\s*\1", re.M | re.S)
_CODE = re.compile(r"`([^`\n]+)`")
_PLACEHOLDER = re.compile(r"[*?<>{}$]|\.\.\.")


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _code_spans(text: str):
    """``(position, text)`` of each fenced block and each inline code span outside them."""
    for m in _FENCE.finditer(text):
        yield m.start(), m.group(2)
    outside = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # keeps line numbers
    for m in _CODE.finditer(outside):
        yield m.start(), m.group(1)


def _defines(path: Path, name: str) -> bool:
    return re.search(rf"^\s*(async\s+)?def {re.escape(name)}\b", path.read_text(), re.M) is not None


def _test_defined(name: str) -> bool:
    return any(_defines(p, name) for p in (REPO / "tests").glob("test_*.py"))


def _imports(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def broken_references(doc: str, text: str, root: Path = REPO) -> list[str]:
    """What in ``text`` (the document ``doc``, relative to ``root``) names something that is not there."""
    bad: list[str] = []
    base = posixpath.dirname(doc)
    links = [*_LINK.finditer(text), *_REF.finditer(text), *_IMG.finditer(text)]
    for m in links:
        target = m.group(1)
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a web / mail link, or an anchor in this document
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not (root / posixpath.normpath(posixpath.join(base, path))).exists():
            bad.append(f"{doc}:{_line(text, m.start())}: link to {target}, which does not exist")
    for pos, span in _code_spans(text):
        for word in span.split():
            word = word.strip("\"'()[],;:`").rstrip(".")
            path, _, test = word.partition("::")
            if any(path.startswith(t + "/") for t in TOP) and not _PLACEHOLDER.search(word):
                where = root / path
                if not where.exists():
                    bad.append(f"{doc}:{_line(text, pos)}: `{word}` does not exist")
                elif test and not _defines(where, test.split("[")[0]):
                    bad.append(f"{doc}:{_line(text, pos)}: `{word}`: no {test} in {path}")
            elif re.fullmatch(r"test_\w+\.py", word) and not (root / "tests" / word).is_file():
                bad.append(f"{doc}:{_line(text, pos)}: `{word}` is not in tests/")
            elif re.fullmatch(r"test_\w+", word) and root == REPO and not _test_defined(word):
                bad.append(f"{doc}:{_line(text, pos)}: no test `{word}` in tests/")
            elif re.fullmatch(r"transmrsr(\.\w+)+(\(\))?", word) and not re.search(r"\.(py|md|json)$", word):
                if root == REPO and not _imports(word.removesuffix("()")):
                    bad.append(f"{doc}:{_line(text, pos)}: `{word}` does not import")
    return bad


@pytest.mark.parametrize("doc", DOCS)
def test_documents_name_only_what_exists(doc):
    assert (REPO / doc).is_file(), doc
    bad = broken_references(doc, (REPO / doc).read_text())
    assert not bad, "references to what is not in the repository:\n" + "\n".join(bad)


def test_the_check_is_not_vacuous(tmp_path: Path):
    """Broken links, paths and tests are found; web links, anchors, placeholders and existing files are not."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "docs" / "here.md").write_text("")
    (tmp_path / "tests" / "test_a.py").write_text("def test_one():\n    pass\n")
    text = (
        "[ok](here.md#part) [web](https://example.org/x.md) [anchor](#top) ![gone](missing.png)\n"
        "[ref]: ../docs/nothere.md\n"
        '<img src="pic.png">\n'
        "`docs/here.md` `docs/gone.md` `tests/test_a.py::test_one` `tests/test_a.py::test_two` `DATA/x.nii` `docs/*.md`\n"
        "```bash\npython tests/test_b.py --quick\n```\n"
    )
    found = broken_references("docs/x.md", text, root=tmp_path)
    words = " ".join(found)
    assert len(found) == 6, found
    for name in ("missing.png", "nothere.md", "pic.png", "docs/gone.md", "test_two", "tests/test_b.py"):
        assert name in words, (name, found)
