"""terminology/ and mappings/ import neither fhir_server nor I/O modules (ARCHITECTURE.md)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_FIRST_PARTY = {"terminology": {"terminology"}, "mappings": {"mappings", "terminology"}}
FORBIDDEN = {
    "fhir_server",
    "socket",
    "sqlite3",
    "sqlalchemy",
    "sqlmodel",
    "httpx",
    "requests",
    "urllib",
    "os",
    "pathlib",
}
SOURCES = [p for pkg in ALLOWED_FIRST_PARTY for p in sorted((ROOT / pkg).rglob("*.py"))]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_library_imports_stay_inside_the_layering_rule(path):
    package = path.relative_to(ROOT).parts[0]
    imported = _imported_modules(path)
    assert not imported & FORBIDDEN
    first_party = imported & {"fhir_server", "plan_engine", "profiles", "mappings", "terminology"}
    assert first_party <= ALLOWED_FIRST_PARTY[package]


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_library_never_calls_open(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    assert all(c.func.id != "open" for c in calls)
