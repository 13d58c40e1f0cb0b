"""Every file the docs name exists: Markdown, docstrings and comments that point at ``dir/file.py``.

Why: modules move (the restructuring moved 19 of them), and a README or a
docstring that sends a reader to a file that is gone costs more than no pointer.
A path whose first folder is one of the repository's is checked against the
repository (or against the document's own folder); a bare module name must be
some file of the repository. Paths into other projects (``tensorflow/...``,
``tfx/...``) are not ours and are left alone.
"""
from __future__ import annotations

import ast
import io
import os
import re
import tokenize
from typing import Iterator, List, Set, Tuple

from configs import REPO_ROOT

SKIP_DIRS = {".git", ".venv", ".bench", "work", "build", "__pycache__", "results", "datasets", ".hypothesis"}  # .bench: peers (benchmarks/peers.py)
SUFFIXES = ("py", "yaml", "sh", "md", "pbtxt", "toml", "cfg", "lock")
PATH = re.compile(r"(?<![\w/.$-])((?:[A-Za-z_][\w.-]*/)*[A-Za-z_][\w-]*\.(?:%s))(?![\w/])" % "|".join(SUFFIXES))


def _walk() -> Iterator[str]:
    for root, dirs, files in os.walk(REPO_ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for f in sorted(files):
            yield os.path.join(root, f)


def _texts(path: str) -> List[str]:
    """Markdown as a whole; of Python, the docstrings and the comments."""
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    if path.endswith(".md"):
        return [source]
    if path.endswith((".yaml", ".sh")):
        return [line.split("#", 1)[1] for line in source.splitlines() if "#" in line]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                out.append(doc)
    out += [tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT]
    return out


def _all_names() -> Set[str]:
    return {os.path.basename(p) for p in _walk()}


def dangling(paths: List[str]) -> List[Tuple[str, str]]:
    """(document, path) for every path named in ``paths``' docs that does not exist."""
    top = set(os.listdir(REPO_ROOT)) - SKIP_DIRS
    names = _all_names()
    out = []
    for doc in paths:
        here = os.path.dirname(doc)
        for text in _texts(doc):
            for ref in PATH.findall(text):
                first = ref.split("/", 1)[0]
                if "/" not in ref:
                    if not ref.endswith(".py"):
                        continue  # report.md, model_quality.md: files the code writes
                    ok = ref in names
                elif first in top:
                    ok = os.path.exists(os.path.join(REPO_ROOT, ref))
                elif os.path.exists(os.path.join(here, first)):
                    ok = os.path.exists(os.path.join(here, ref))
                else:
                    continue  # another project's path
                if not ok:
                    out.append((os.path.relpath(doc, REPO_ROOT), ref))
    return out


def test_every_path_the_docs_name_exists():
    docs = [p for p in _walk() if p.endswith((".md", ".py", ".yaml", ".sh"))]
    assert dangling(docs) == []


def test_a_moved_module_is_caught(tmp_path):
    doc = tmp_path / "NOTES.md"
    doc.write_text("See pipeline_components/log_join.py and trainer/run.py, span_window.py and tfx/types/artifact.py.")
    assert dangling([str(doc)]) == [(os.path.relpath(str(doc), REPO_ROOT), "pipeline_components/log_join.py"),
                                    (os.path.relpath(str(doc), REPO_ROOT), "span_window.py")]
