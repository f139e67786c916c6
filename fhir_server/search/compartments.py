"""Compartments (FHIR R4 compartmentdefinition.html): which resources belong to a patient,
an encounter, a practitioner, a related person or a device.

Loaded once from ``compartments.json``, generated from the five R4 CompartmentDefinitions by
``python -m fhir_server.search.generate``. A resource of type T is in the compartment of
``Patient/123`` when one of the reference parameters the definition lists for T refers to
``Patient/123``; ``{def}`` stands for the owner itself (Encounter, Practitioner and
RelatedPerson list it for their own type). The R4 Patient definition does not list
``{def}``, so ``Patient/123/Patient`` finds the patients that link to 123, not 123 itself;
we follow the definition as published.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).resolve().parent / "compartments.json"

# CompartmentDefinition.resource.param: "{def}" is the compartment's owner itself.
ITSELF = "{def}"


@dataclass(frozen=True, slots=True)
class CompartmentDefinition:
    code: str  # the owner's resource type: Patient, Encounter, ...
    url: str
    members: dict[str, tuple[str, ...]]  # resource type -> parameter codes (maybe "{def}")

    def params_for(self, rtype: str) -> tuple[str, ...]:
        """The reference parameters of ``rtype`` that point into the compartment."""
        return tuple(p for p in self.members.get(rtype, ()) if p != ITSELF)

    def includes_owner(self, rtype: str) -> bool:
        return ITSELF in self.members.get(rtype, ())

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(self.members)


def load_compartments(data: dict[str, Any]) -> dict[str, CompartmentDefinition]:
    return {
        code: CompartmentDefinition(
            code, c["url"], {t: tuple(params) for t, params in c["resources"].items()}
        )
        for code, c in data["compartments"].items()
        if c.get("search", True)
    }


@cache
def compartments() -> dict[str, CompartmentDefinition]:
    """The R4 compartments that can be searched, by owner type (read once)."""
    with open(DATA_FILE, encoding="utf-8") as fh:
        return load_compartments(json.load(fh))
