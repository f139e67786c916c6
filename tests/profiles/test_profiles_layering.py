"""profiles/ is a pure library (ARCHITECTURE.md): it may use terminology and fhirpathpy, never
fhir_server, and reads nothing but its own packaged data. The generator is the one module that
reads the reference definitions, and it only runs at development time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "profiles"
GENERATOR = PACKAGE / "generate.py"
FIRST_PARTY = {"fhir_server", "plan_engine", "profiles", "mappings", "terminology"}
ALLOWED_FIRST_PARTY = {"profiles", "terminology"}
IO_MODULES = {
    "os",
    "pathlib",
    "socket",
    "sqlite3",
    "sqlalchemy",
    "sqlmodel",
    "httpx",
    "requests",
    "urllib",
    "subprocess",
}
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_profiles_depends_only_on_terminology_among_our_packages(path):
    assert _imports(path) & FIRST_PARTY <= ALLOWED_FIRST_PARTY


@pytest.mark.parametrize(
    "path", [p for p in SOURCES if p != GENERATOR], ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_library_does_no_io_beyond_its_packaged_data(path):
    assert not _imports(path) & IO_MODULES
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    ]
    assert "open" not in calls


def test_the_validator_does_not_import_the_generator():
    for path in SOURCES:
        assert "generate" not in {
            alias.name.rsplit(".", 1)[-1]
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        } | {
            node.module.rsplit(".", 1)[-1]
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.ImportFrom) and node.module
        }
