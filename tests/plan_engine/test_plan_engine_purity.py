"""plan_engine stays a pure library, and its codes agree with terminology/ where both exist."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from plan_engine import codes, load_catalogue
from plan_engine.config import load_rules

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "plan_engine"
TERMINOLOGY = ROOT / "terminology" / "content"
FORBIDDEN_MODULES = {
    "fhir_server", "socket", "sqlite3", "sqlalchemy", "sqlmodel", "httpx", "requests",
    "urllib", "http", "subprocess", "time", "secrets", "os",
}  # fmt: skip
FORBIDDEN_CALLS = {"now", "today", "utcnow", "open", "write_text", "write_bytes", "time"}


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_io_no_clock_no_server_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]]
        else:
            names = []
        assert not set(names) & FORBIDDEN_MODULES, (path, names)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in FORBIDDEN_CALLS, (path, node.func.attr)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, (path, node.func.id)
            if node.func.id == "Random":
                assert node.args, "random.Random must be seeded"


def _code_system(name: str) -> set[str] | None:
    path = TERMINOLOGY / f"CodeSystem-{name}.json"
    if not path.exists():
        return None
    found: set[str] = set()

    def walk(concepts: list[dict]) -> None:
        for concept in concepts:
            found.add(concept["code"])
            walk(concept.get("concept", []))

    resource = json.loads(path.read_text(encoding="utf-8"))
    walk(resource.get("concept", []))
    return found


def _require(name: str, url: str) -> set[str]:
    found = _code_system(name)
    if found is None:
        pytest.skip(f"terminology/content has no CodeSystem-{name}.json yet")
    resource = json.loads((TERMINOLOGY / f"CodeSystem-{name}.json").read_text(encoding="utf-8"))
    assert resource["url"] == url
    return found


def test_education_themes_match_terminology() -> None:
    known = _require("education-theme", codes.EDUCATION_THEME)
    assert set(load_catalogue().themes) == known
    for trigger in load_rules().education.triggers:
        assert set(trigger.themes) <= known, trigger.id
    for barrier, themes in load_rules().education.barrier_themes:
        assert set(themes) <= known, barrier


def test_feedback_reasons_match_terminology() -> None:
    assert (
        _require("exercise-feedback-reason", codes.EXERCISE_FEEDBACK_REASON)
        >= codes.FEEDBACK_REASONS
    )


def test_activity_kinds_match_terminology() -> None:
    known = _require("plan-activity-kind", codes.PLAN_ACTIVITY_KIND)
    emitted = {
        codes.ACTIVITY_KIND_EXERCISE,
        codes.ACTIVITY_KIND_PAIN_RELIEF_EXERCISE,
        codes.ACTIVITY_KIND_EDUCATION,
        codes.ACTIVITY_KIND_QUIZ,
        codes.ACTIVITY_KIND_STEP_GOAL,
    }
    assert emitted <= known


def test_red_flag_codes_match_terminology() -> None:
    known = _require("red-flag", codes.RED_FLAG)
    assert set(codes.FINDING_RED_FLAG_CODES.values()) <= known
    assert set(codes.RED_FLAG_ANSWER_CODES.values()) <= known
    answers = {n for r in load_rules().safety.red_flag_rules for n in r.all_of}
    assert answers <= set(codes.RED_FLAG_ANSWER_CODES)


def test_barriers_match_terminology() -> None:
    known = _require("barrier", f"{codes.CANONICAL_BASE}/CodeSystem/barrier")
    assert {name for name, _ in load_rules().education.barrier_themes} <= known
