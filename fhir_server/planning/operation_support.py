"""What the planning operations share: parameters, read-only reads, error mapping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from fhir_server.errors import FhirError, bad_request, unprocessable
from fhir_server.operations import OperationCall
from fhir_server.planning.snapshot import PlanningInputError
from fhir_server.planning.weeks import day_of_us
from fhir_server.storage.repository import Repository, WriteSession

LATEST_AS_OF = date(9000, 1, 1)


def text_value(value: Any, name: str) -> str | None:
    """A parameter as text: a query string, or a Parameters value[x] of a text-like type."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in (
            "valueString",
            "valueDate",
            "valueCanonical",
            "valueUri",
            "valueCode",
            "valueId",
        ):
            if isinstance(value.get(key), str):
                return str(value[key])
        reference = value.get("valueReference")
        if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
            return str(reference["reference"])
    raise bad_request(f"Parameter '{name}' has no usable value", name)


def single(call: OperationCall, name: str) -> str | None:
    values = [v for k, v in call.parameters if k == name]
    if len(values) > 1:
        raise bad_request(f"Parameter '{name}' may be given once", name)
    return text_value(values[0], name) if values else None


def as_of_parameter(call: OperationCall) -> date | None:
    """``asOf``: the first day of the plan week (YYYY-MM-DD); absent: the next week to plan."""
    raw = single(call, "asOf")
    if raw is None:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise bad_request(f"asOf '{raw}' is not a date (YYYY-MM-DD)", "asOf") from None
    if day > LATEST_AS_OF:  # the plan week must end within the calendar (date.max)
        raise bad_request(f"asOf '{raw}' is later than {LATEST_AS_OF}", "asOf")
    return day


def today(call: OperationCall) -> date:
    return day_of_us(call.now)


@contextmanager
def reading(repo: Repository) -> Iterator[WriteSession]:
    """A read-only view for the planning reader: a session on a read connection (it only
    reads; nothing is ever put through it)."""
    with repo.reading() as conn:
        yield WriteSession(conn)


def unplannable(exc: PlanningInputError) -> FhirError:
    return unprocessable(f"No plan can be made: {exc}")
