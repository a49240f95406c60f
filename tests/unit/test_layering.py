"""Imports point one way (docs/ARCHITECTURE.md, "Layout"): each layer imports only from
the layers below it (or within itself), for every module of the project, lazy imports
inside functions included; imports for type annotations only (``if TYPE_CHECKING:``)
are not dependencies and are left out."""
from __future__ import annotations

import ast

from tests.conftest import ROOT

#: Top to bottom. A name is a top-level package, or a module of ``app/`` (the Faust
#: composition root at the top, the plain settings and records at the bottom).
LAYERS = [
    {"cli", "benchmarks"},
    {"evaluation"},
    {"harness"},
    {"app.worker"},
    {"api"},
    {"agents"},
    {"web", "offline_als", "learner"},
    {"tables"},
    {"datatools"},
    {"app.app", "app.topics", "app.faust_patches"},
    {"broker"},
    {"app.settings", "app.records", "app.metrics"},
    {"ranking"},  # pure: the settings name its rankers
]
LEVEL = {name: n for n, layer in enumerate(LAYERS) for name in layer}


def unit_of(module: str) -> str | None:
    """The layer name of a dotted module name (None: not the project's)."""
    parts = module.split(".")
    if parts[0] == "app":
        return ".".join(parts[:2]) if len(parts) > 1 and ".".join(parts[:2]) in LEVEL else "app.app"
    return parts[0] if parts[0] in LEVEL else None


def runtime_imports(tree: ast.Module):
    """Every imported module name, except under ``if TYPE_CHECKING:``."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def project_modules():
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {".venv", "tests", "build"} or len(rel.parts) < 2:
            continue
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        if unit_of(module) is not None:
            yield module, path


def upward_imports() -> list[str]:
    wrong = []
    for module, path in project_modules():
        here = unit_of(module)
        for imported in runtime_imports(ast.parse(path.read_text())):
            there = unit_of(imported)
            if there is not None and LEVEL[there] < LEVEL[here]:
                wrong.append(f"{module} ({here}) imports {imported} ({there})")
    return sorted(set(wrong))


def test_every_package_is_in_a_layer():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "tests"}
    assert packages - {name.split(".")[0] for name in LEVEL} == set()


def test_imports_point_down():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: a ranker importing an agent is reported."""
    fake = tmp_path / "ranking" / "bad.py"
    fake.parent.mkdir()
    fake.write_text("def f():\n    from agents.realtime import register\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert upward_imports() == ["ranking.bad (ranking) imports agents.realtime (agents)",
                                "ranking.bad (ranking) imports agents.realtime.register (agents)"]
