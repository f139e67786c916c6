"""Custom search parameters: SearchParameter resources stored on the server that add
parameters to the R4 core ones (FHIR R4 searchparameter.html).

Pure: SearchParameter resources (JSON dicts) and the core registry in, the parameters they
define and what was wrong with the others out. Which resources count:

- ``status`` is ``active`` (draft and retired parameters are stored, not used);
- ``code``, ``base`` (known resource types, or ``Resource``/``DomainResource``), ``type``
  and ``expression`` are present; the type is one we index (string, token, date, number,
  quantity, reference, uri -- composite and special are not supported for custom ones);
- it does not redefine a core parameter: a copy of a core definition (same ``url``) is
  silently the core one; another definition of a core code on the same base, or a code
  starting with ``_``, is refused (HAPI lets custom parameters override built-in ones; we
  keep the core semantics stable and say so in the problems);
- when two custom parameters claim the same code on one base, the one with the smaller
  ``url`` wins.

Expressions are evaluated with fhirpathpy (compiled once, as for the few core expressions
outside the path grammar); an expression fhirpathpy cannot compile or run on an empty
resource is refused here, and one that fails on a particular resource indexes nothing for
it (extraction.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from fhir_server.search.generate import split_union
from fhir_server.search.paths import compile_fhirpath
from fhir_server.search.registry import TABLE_OF_TYPE, Registry, SearchParam, registry

COMMON_BASES = ("Resource", "DomainResource")


@dataclass(frozen=True, slots=True)
class CustomParams:
    params: tuple[SearchParam, ...]
    problems: tuple[str, ...]


def _head(part: str) -> str | None:
    """The type an expression alternative starts from (``Patient`` in ``Patient.name``)."""
    text = part.lstrip("( ")
    name = ""
    for ch in text:
        if not (ch.isalnum() or ch == "_"):
            break
        name += ch
    return name if name[:1].isupper() else None


def expression_for(expression: str, base: str) -> str:
    """The alternatives of ``expression`` that concern ``base`` (searchparameter.html: one
    expression may serve several bases, ``Patient.name | Practitioner.name``)."""
    mine = [p for p in split_union(expression) if _head(p) in (base, *COMMON_BASES, None)]
    return " | ".join(mine)


def _problem(resource: dict[str, Any], text: str) -> str:
    return f"SearchParameter/{resource.get('id', '?')} ({resource.get('url', 'no url')}): {text}"


def custom_params(resources: Iterable[dict[str, Any]], core: Registry) -> CustomParams:
    """The parameters the active SearchParameter ``resources`` define on top of ``core``."""
    params: list[SearchParam] = []
    problems: list[str] = []
    claimed: set[tuple[str, str]] = set()
    for sp in sorted(resources, key=lambda r: str(r.get("url", ""))):
        if sp.get("resourceType") != "SearchParameter" or sp.get("status") != "active":
            continue
        url = sp.get("url")
        if isinstance(url, str) and url in core.by_url:
            continue  # a copy of a core definition: already in force
        found, trouble = _one(sp, core, claimed)
        params.extend(found)
        problems.extend(_problem(sp, t) for t in trouble)
    return CustomParams(tuple(params), tuple(problems))


def _one(
    sp: dict[str, Any], core: Registry, claimed: set[tuple[str, str]]
) -> tuple[list[SearchParam], list[str]]:
    code, ptype, expression = sp.get("code"), sp.get("type"), sp.get("expression")
    bases = sp.get("base")
    if not isinstance(code, str) or not code or code.startswith("_"):
        return [], [f"code {code!r} cannot be used (missing, or reserved with '_')"]
    if ptype not in TABLE_OF_TYPE:
        return [], [f"type {ptype!r} is not supported for custom parameters"]
    if not isinstance(expression, str) or not expression.strip():
        return [], ["no expression"]
    if not isinstance(bases, list) or not bases:
        return [], ["no base"]
    found: list[SearchParam] = []
    trouble: list[str] = []
    for base in bases:
        if not isinstance(base, str) or not (base in COMMON_BASES or core.knows_type(base)):
            trouble.append(f"base {base!r} is not a resource type")
            continue
        if core.by_type.get(base, {}).get(code) or (
            base not in COMMON_BASES and core.get(base, code) is not None
        ):
            trouble.append(f"{base}.{code} is a core parameter; custom ones cannot redefine it")
            continue
        if (base, code) in claimed:
            trouble.append(f"{base}.{code} is already defined by another custom parameter")
            continue
        filtered = expression_for(expression, base)
        if not filtered:
            trouble.append(f"the expression has no part for {base}")
            continue
        try:
            # fhirpathpy resolves functions when it evaluates: a trial run on an empty
            # resource finds unknown ones (nosuchfn()) before any write depends on it.
            compile_fhirpath(filtered)(
                {"resourceType": base if base not in COMMON_BASES else "Basic"}
            )
        except Exception as exc:  # noqa: BLE001 - fhirpathpy raises bare Exception subclasses
            trouble.append(f"expression {filtered!r} does not compile: {exc}")
            continue
        claimed.add((base, code))
        targets = sp.get("target")
        found.append(
            SearchParam(
                code=code,
                type=ptype,
                rtype=base,
                url=str(sp.get("url") or f"urn:custom:{base}-{code}"),
                expression=filtered,
                paths=None,
                targets=tuple(t for t in targets if isinstance(t, str))
                if isinstance(targets, list)
                else (),
                comparators=tuple(sp.get("comparator") or ()),
                modifiers=tuple(sp.get("modifier") or ()),
                custom=True,
            )
        )
    return found, trouble


class LiveRegistry:
    """The registry one database serves: the core parameters plus its active custom ones.

    ``current(stamp, load)`` takes a cheap digest of the stored SearchParameter resources
    (storage computes it with one indexed query) and rebuilds the registry from ``load()``
    only when the digest changed since the last call. Every server process asks in each
    write transaction and, for searches, at most every few hundred ms
    (fhir_server.storage.search_sql.SearchRegistryCache), so a SearchParameter written
    through any process is in force in all of them within that bound, without messages
    between processes.
    """

    def __init__(self, core: Registry | None = None) -> None:
        self._core = core or registry()
        self._state: tuple[Hashable, Registry] = (None, self._core)
        self._lock = threading.Lock()

    def current(self, stamp: Hashable, load: Callable[[], Iterable[dict[str, Any]]]) -> Registry:
        known, reg = self._state  # one tuple, replaced whole: a consistent pair
        if stamp == known:
            return reg
        with self._lock:
            known, reg = self._state
            if stamp == known:
                return reg
            found = custom_params(load(), self._core)
            if found.params or found.problems:
                reg = self._core.with_params(found.params, found.problems)
            else:
                reg = self._core
            self._state = (stamp, reg)
            return reg
