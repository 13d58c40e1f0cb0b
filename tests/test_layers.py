"""The house plan, read from the source with ``ast``: which package may import which, and no circle.

Why a test: a layer rule that is only written down erodes one convenient import
at a time. The trainer must run on a worker pod without the pipeline's code;
the model server must start without TFX; the components must not reach up into
the orchestration that runs them (that was the ``compiled`` -> ``pipeline`` ->
``log_join`` -> ``compiled`` circle). Function-level imports count too: a lazy
import still couples the modules.
"""
from __future__ import annotations

import ast
import os
from typing import Dict, List, Set

import pytest

from configs import REPO_ROOT

PACKAGES = ("benchmarks", "configs", "dags", "loggen", "model_server", "pipeline_components", "schemas", "tests",
            "trainer", "transforms")

# package (or module prefix) -> the first-party prefixes it may import besides itself.
ALLOWED = {
    "configs": ("schemas",),   # the config checks its tasks: section with the funnel rules
    "schemas": (),
    "loggen": ("schemas",),
    "transforms": ("schemas", "configs"),
    "trainer": ("schemas", "configs"),
    "model_server": ("configs",),
    "pipeline_components.spans": ("schemas",),
    "pipeline_components.components": ("configs", "schemas", "model_server", "pipeline_components.spans",
                                       "pipeline_components.components"),
    "pipeline_components.reporting": ("configs", "schemas", "pipeline_components.components.gate_report",
                                      "pipeline_components.reporting"),
}


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, REPO_ROOT)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _source_files() -> List[str]:
    out = []
    for pkg in PACKAGES:
        for root, dirs, files in os.walk(os.path.join(REPO_ROOT, pkg)):
            dirs[:] = [d for d in dirs if not d.startswith((".", "__pycache__"))]
            out += [os.path.join(root, f) for f in files if f.endswith(".py")]
    return sorted(out)


def first_party_imports(path: str, modules: Set[str]) -> Set[str]:
    """The project modules ``path`` imports, at any depth of the file (``from pkg import mod``
    counts as ``pkg.mod`` when that is a module)."""
    with open(path) as fh:
        tree = ast.parse(fh.read(), path)
    name = _module_name(path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] in PACKAGES:
                found.add(t)
    return found - {name}


@pytest.fixture(scope="module")
def graph() -> Dict[str, Set[str]]:
    files = _source_files()
    modules = {_module_name(f) for f in files}
    return {_module_name(f): first_party_imports(f, modules) for f in files}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def rule_for(module: str):
    matches = [p for p in ALLOWED if _within(module, p)]
    return max(matches, key=len) if matches else None


def violations(graph: Dict[str, Set[str]]) -> List[str]:
    out = []
    for module, imports in sorted(graph.items()):
        rule = rule_for(module)
        if rule is None:
            continue
        allowed = (rule,) + ALLOWED[rule]
        out += [f"{module} imports {imp}" for imp in sorted(imports)
                if not any(_within(imp, a) or _within(a, imp) for a in allowed)]
    return out


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Every import circle, as found by a depth-first search (each reported once)."""
    found, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = "open"
        stack.append(m)
        for dep in sorted(d for d in graph.get(m, ()) if d in graph):
            if state.get(dep) == "open":
                found.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def test_lower_layers_import_only_what_they_sit_on(graph):
    assert violations(graph) == []


def test_no_import_circle(graph):
    assert cycles(graph) == []


def test_the_checks_catch_what_they_forbid():
    """The rules bite: a trainer module importing the pipeline, and a two-module circle, are caught."""
    fake = {"trainer.run": {"pipeline_components.orchestration.compiled", "configs"},
            "pipeline_components.orchestration.compiled": {"pipeline_components.pipeline"},
            "pipeline_components.pipeline": {"pipeline_components.orchestration.compiled"},
            "pipeline_components.components.log_join": {"pipeline_components.orchestration.compiled"}}
    assert violations(fake) == ["pipeline_components.components.log_join imports "
                                "pipeline_components.orchestration.compiled",
                                "trainer.run imports pipeline_components.orchestration.compiled"]
    assert cycles(fake) == [["pipeline_components.orchestration.compiled", "pipeline_components.pipeline",
                             "pipeline_components.orchestration.compiled"]]


def _defined_in(name_is, constant: str = None) -> List[str]:
    out = []
    for path in _source_files():
        if os.path.samefile(path, __file__):
            continue  # this test names what it looks for
        with open(path) as fh:
            tree = ast.parse(fh.read(), path)
        for node in ast.walk(tree):
            hit = (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and name_is(t.id) for t in node.targets)) \
                or (constant is not None and isinstance(node, ast.Constant) and node.value == constant)
            if hit:
                out.append(os.path.relpath(path, REPO_ROOT))
                break
    return out


def test_the_repository_root_and_tensorflows_environment_are_each_set_in_one_module():
    assert _defined_in(lambda n: n in ("REPO_ROOT", "REPO", "ROOT")) == ["configs/__init__.py"]
    assert _defined_in(lambda n: False, "TF_USE_LEGACY_KERAS") == ["configs/tf_env.py"]
