"""Agreement of ``profiles.validate`` with the HL7 Java reference validator.

Run from the repository root::

    .venv/bin/python -m tests.profiles.agreement ../shared/fhir-r4/validation-cases

Each case of ``cases.json`` is parsed as the server would parse it (strict JSON; XML through
``fhir_server.formats.xml``; NDJSON line by line), then validated with the default options.
A document that does not parse is invalid with one fatal issue, as the reference validator
reports it. Verdicts (valid = no error or fatal issue) and error counts are compared with the
reference outcome; the headline figure is the verdict agreement on the cases that need no
external terminology (``terminology_dependent`` false).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import profiles
from fhir_server.errors import FhirError
from fhir_server.formats.xml import parse_xml
from profiles import Issue, ValidationOptions


@dataclass(frozen=True)
class Outcome:
    name: str
    module: str
    terminology_dependent: bool
    expected_valid: bool
    expected_errors: int
    valid: bool
    errors: int
    messages: tuple[str, ...]

    @property
    def verdict_agrees(self) -> bool:
        return self.valid == self.expected_valid

    @property
    def count_agrees(self) -> bool:
        return self.errors == self.expected_errors


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Duplicate(f"duplicate JSON property {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)


def _resources(case: dict[str, Any], root: Path) -> list[Any] | str:
    """The resources of a case, or why the document does not parse."""
    data = (root / case["file"]).read_bytes()
    try:
        if case["format"] == "xml":
            return [parse_xml(data)]
        text = data.decode("utf-8-sig")
        if case["format"] == "ndjson":
            return [_parse_json(line) for line in text.splitlines() if line.strip()]
        return [_parse_json(text)]
    except FhirError as error:
        return "; ".join(i.diagnostics for i in error.issues) or str(error)
    except (ValueError, UnicodeDecodeError) as error:
        return f"{type(error).__name__}: {error}"


def _options(case: dict[str, Any]) -> ValidationOptions:
    flags = case.get("validator_options") or {}
    # The reference validator warns about profiles in meta.profile it cannot resolve.
    return ValidationOptions(
        unknown_profiles="warning", no_html_in_markdown=bool(flags.get("noHtmlInMarkdown"))
    )


def run_case(case: dict[str, Any], root: Path) -> Outcome:
    parsed = _resources(case, root)
    issues: list[Issue] = []
    if isinstance(parsed, str):
        issues = [Issue("fatal", "invalid", f"Document does not parse: {parsed}")]
    else:
        for resource in parsed:
            issues += profiles.validate(resource, options=_options(case))
    errors = [i for i in issues if i.is_error]
    return Outcome(
        name=case["name"],
        module=case["module"],
        terminology_dependent=bool(case["terminology_dependent"]),
        expected_valid=bool(case["expected_valid"]),
        expected_errors=int(case["expected_error_count"]),
        valid=not errors,
        errors=len(errors),
        messages=tuple(f"{' '.join(i.expression)}: {i.diagnostics}" for i in errors),
    )


def run(cases_dir: Path) -> list[Outcome]:
    cases = json.loads((cases_dir / "cases.json").read_text())["cases"]
    return [run_case(case, cases_dir) for case in cases]


def _share(outcomes: list[Outcome], attribute: str) -> tuple[int, int]:
    return sum(1 for o in outcomes if getattr(o, attribute)), len(outcomes)


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    offline = [o for o in outcomes if not o.terminology_dependent]
    return {
        "verdict_offline": _share(offline, "verdict_agrees"),
        "count_offline": _share(offline, "count_agrees"),
        "verdict_all": _share(outcomes, "verdict_agrees"),
        "count_all": _share(outcomes, "count_agrees"),
    }


def _percent(pair: tuple[int, int]) -> str:
    agreed, total = pair
    return f"{agreed}/{total} ({100 * agreed / total:.1f} %)"


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("cases", type=Path, help="the validation-cases folder")
    parser.add_argument("--verbose", action="store_true", help="print every disagreement")
    args = parser.parse_args(list(argv) if argv is not None else None)
    started = time.perf_counter()
    outcomes = run(args.cases)
    elapsed = time.perf_counter() - started
    figures = summary(outcomes)
    print(f"verdict agreement, no external terminology: {_percent(figures['verdict_offline'])}")
    print(f"error-count agreement, no external terminology: {_percent(figures['count_offline'])}")
    print(f"verdict agreement, all cases: {_percent(figures['verdict_all'])}")
    print(f"error-count agreement, all cases: {_percent(figures['count_all'])}")
    print(f"{len(outcomes)} cases in {elapsed:.1f} s")
    for outcome in outcomes:
        if outcome.verdict_agrees and not args.verbose:
            continue
        if outcome.verdict_agrees and outcome.count_agrees:
            continue
        marker = "VERDICT" if not outcome.verdict_agrees else "count"
        tx = " [tx]" if outcome.terminology_dependent else ""
        print(
            f"- {marker}{tx} {outcome.name} ({outcome.module}): expected "
            f"{'valid' if outcome.expected_valid else 'invalid'}/{outcome.expected_errors}, "
            f"got {'valid' if outcome.valid else 'invalid'}/{outcome.errors}"
        )
        for message in outcome.messages[:6]:
            print(f"    {message[:220]}")


if __name__ == "__main__":
    main()
