"""The terminology service: expand, validate-code, lookup, subsumes and translate.

FHIR R4 terminology-service.html and the operation definitions it names
(valueset-operation-expand, valueset-operation-validate-code,
codesystem-operation-lookup, codesystem-operation-validate-code,
codesystem-operation-subsumes, conceptmap-operation-translate), over CodeSystem, ValueSet
and ConceptMap resources a :class:`~terminology.sources.Source` finds: by default the
programme's content and the R4 core terminology shipped in ``terminology/data``.

ValueSet expansion follows valueset.html#compose: an include is the codes of its system
part (an enumerated ``concept`` list, ``filter``s AND-ed, or the whole code system), then
intersected with every ``valueSet`` it names; includes are unioned and excludes removed.
Filters: ``is-a``, ``descendent-of``, ``is-not-a``, ``generalizes`` (on ``concept``/``code``,
over an is-a hierarchy, see :mod:`terminology.codesystem`), ``=``, ``in``, ``regex`` and
``exists`` on ``code``/``concept``, ``display``, ``parent``/``child`` and any concept property.
Concepts marked ``notSelectable``/``abstract`` are left out of whole-system and filter
includes (enumerated ones are kept). A ValueSet that needs a code system held only in part
or not at all (all of SNOMED CT, LOINC, UCUM...) raises :class:`TerminologyError` with
``not-supported``; more than ``max_expansion`` codes raises ``too-costly``
(valueset-operation-expand: "too-costly").

Pure: no I/O beyond what the source does; time comes in as an argument.
"""

from __future__ import annotations

import re
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from threading import Lock
from typing import Any

from terminology._content import split_canonical
from terminology.codesystem import CodeSystemIndex, value_text
from terminology.errors import TerminologyError
from terminology.sources import Found, Resource, Source, packaged_source

DEFAULT_MAX_EXPANSION = 10_000
Key = tuple[str, str]  # (system, code)
Dependency = tuple[str, str, str | None, str | None]  # (type, url, version asked, marker)

# FHIR R4 conceptmap-equivalence: the meaning of a map read the other way round.
_REVERSED_EQUIVALENCE = {
    "wider": "narrower",
    "narrower": "wider",
    "subsumes": "specializes",
    "specializes": "subsumes",
}
_NO_MATCH = frozenset({"unmatched", "disjoint"})


# FHIR R4 extension-ordinalvalue.html: the score of a code in a scored answer list (a
# Coding's, an answerOption's, and here a CodeSystem concept's or a ValueSet compose
# concept's). R5 renamed it itemWeight; the programme's content is R4.
ORDINAL_VALUE = "http://hl7.org/fhir/StructureDefinition/ordinalValue"


def ordinal_value(element: Any) -> float | None:
    """The ordinalValue extension of a FHIR element (a dict), or None."""
    if not isinstance(element, dict):
        return None
    for ext in _list(element.get("extension")):
        if isinstance(ext, dict) and ext.get("url") == ORDINAL_VALUE:
            value = ext.get("valueDecimal")
            # A Decimal when the server kept the written precision (json.html#primitive).
            if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
                return float(value)
    return None


# --- values -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Coding:
    """A code to check or look up (the ``system``/``code``/``version``/``display``
    parameters, or one Coding of a ``coding``/``codeableConcept``)."""

    code: str
    system: str | None = None
    version: str | None = None
    display: str | None = None


@dataclass(frozen=True, slots=True)
class Designation:
    value: str
    language: str | None = None
    use: dict[str, Any] | None = None

    def as_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.language:
            out["language"] = self.language
        if self.use:
            out["use"] = self.use
        out["value"] = self.value
        return out


@dataclass(frozen=True, slots=True)
class ExpansionEntry:
    """One code of an expansion (ValueSet.expansion.contains). ``ordinal`` is the code's
    ordinalValue: the one the ValueSet lists it with, else the one its CodeSystem gives
    (what questionnaire scoring adds up)."""

    system: str
    code: str
    display: str | None = None
    version: str | None = None
    designations: tuple[Designation, ...] = ()
    abstract: bool = False
    inactive: bool = False
    ordinal: float | None = None

    def display_in(self, language: str | None) -> str | None:
        if language:
            for d in self.designations:
                if d.language and _language_matches(d.language, language):
                    return d.value
        return self.display


@dataclass(frozen=True, slots=True)
class Validation:
    """The answer of $validate-code: ``result``, ``message``, ``display``."""

    result: bool
    message: str | None = None
    display: str | None = None

    def as_parameters(self) -> Resource:
        params: list[dict[str, Any]] = [{"name": "result", "valueBoolean": self.result}]
        if self.message:
            params.append({"name": "message", "valueString": self.message})
        if self.display:
            params.append({"name": "display", "valueString": self.display})
        return {"resourceType": "Parameters", "parameter": params}


@dataclass(frozen=True, slots=True)
class LookupResult:
    """The answer of $lookup (codesystem-operation-lookup)."""

    system: str
    code: str
    name: str
    version: str | None
    display: str | None
    designations: tuple[Designation, ...] = ()
    properties: tuple[tuple[str, Any], ...] = ()  # (code, value) incl. parent / child

    def as_parameters(self) -> Resource:
        params: list[dict[str, Any]] = [{"name": "name", "valueString": self.name}]
        if self.version:
            params.append({"name": "version", "valueString": self.version})
        if self.display:
            params.append({"name": "display", "valueString": self.display})
        for d in self.designations:
            part: list[dict[str, Any]] = []
            if d.language:
                part.append({"name": "language", "valueCode": d.language})
            if d.use:
                part.append({"name": "use", "valueCoding": d.use})
            part.append({"name": "value", "valueString": d.value})
            params.append({"name": "designation", "part": part})
        for code, value in self.properties:
            params.append(
                {"name": "property", "part": [{"name": "code", "valueCode": code}, _value(value)]}
            )
        return {"resourceType": "Parameters", "parameter": params}


@dataclass(frozen=True, slots=True)
class TranslationMatch:
    equivalence: str
    system: str | None
    code: str | None
    display: str | None
    source: str  # the ConceptMap's url
    # ConceptMap.group.element.target.comment: why the map is what it is (e.g. why a score
    # has no LOINC code). R4 $translate has no output parameter for it, so it is not sent.
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class Translation:
    """The answer of $translate (conceptmap-operation-translate)."""

    result: bool
    message: str | None
    matches: tuple[TranslationMatch, ...] = ()

    def as_parameters(self) -> Resource:
        params: list[dict[str, Any]] = [{"name": "result", "valueBoolean": self.result}]
        if self.message:
            params.append({"name": "message", "valueString": self.message})
        for m in self.matches:
            part: list[dict[str, Any]] = [{"name": "equivalence", "valueCode": m.equivalence}]
            if m.code is not None:
                coding = {"system": m.system, "code": m.code, "display": m.display}
                part.append(
                    {"name": "concept", "valueCoding": {k: v for k, v in coding.items() if v}}
                )
            part.append({"name": "source", "valueUri": m.source})
            params.append({"name": "match", "part": part})
        return {"resourceType": "Parameters", "parameter": params}


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"name": "value", "valueBoolean": value}
    if isinstance(value, int):
        return {"name": "value", "valueInteger": value}
    if isinstance(value, float):
        return {"name": "value", "valueDecimal": value}
    if isinstance(value, dict):
        return {"name": "value", "valueCoding": value}
    return {"name": "value", "valueCode": str(value)}


def _language_matches(tag: str, wanted: str) -> bool:
    """``da`` matches ``da`` and ``da-DK`` (BCP 47 prefixes), case-insensitively."""
    tag, wanted = tag.lower(), wanted.lower()
    return tag == wanted or tag.startswith(wanted + "-") or wanted.startswith(tag + "-")


# --- the per-process cache ----------------------------------------------------------


@dataclass(slots=True)
class _Cached:
    dependencies: tuple[Dependency, ...]
    value: Any


class _LruCache:
    """A small thread-safe LRU map (the server runs operations in a thread pool)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, _Cached] = OrderedDict()
        self._lock = Lock()

    def get(self, key: Any) -> _Cached | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Any, value: _Cached) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


# Expansions keyed by (url, version, marker) of the ValueSet; each entry remembers the
# markers of every CodeSystem and ValueSet it used and is recomputed when one changed.
_EXPANSIONS = _LruCache(256)
_CODE_SYSTEMS = _LruCache(128)


def clear_caches() -> None:
    _EXPANSIONS.clear()
    _CODE_SYSTEMS.clear()


# --- the service --------------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    """What one expansion touched (for the cache) and how many codes it holds so far."""

    dependencies: list[Dependency] = field(default_factory=list)
    cacheable: bool = True


class TerminologyService:
    def __init__(
        self, source: Source | None = None, *, max_expansion: int = DEFAULT_MAX_EXPANSION
    ) -> None:
        self.source: Source = source if source is not None else packaged_source()
        self.max_expansion = max_expansion

    # -- finding resources ---------------------------------------------------------

    def find(self, resource_type: str, canonical: str, version: str | None = None) -> Found:
        """The resource with this canonical (``url|version`` or a separate version);
        TerminologyError ``not-found`` when the source does not hold it."""
        url, in_url = split_canonical(canonical)
        version = version or in_url
        found = self.source.find(resource_type, url, version)
        if found is None:
            suffix = f" version {version}" if version else ""
            raise TerminologyError(f"{resource_type} {url}{suffix} is not known here")
        return found

    def code_system(self, url: str, version: str | None = None) -> CodeSystemIndex:
        return self._code_system_of(self.find("CodeSystem", url, version))

    def _code_system_of(self, found: Found) -> CodeSystemIndex:
        cs = found.resource
        if found.marker is None:
            return CodeSystemIndex.of(cs)
        key = (cs.get("url"), cs.get("version"), found.marker)
        cached = _CODE_SYSTEMS.get(key)
        if cached is None:
            cached = _Cached((), CodeSystemIndex.of(cs))
            _CODE_SYSTEMS.put(key, cached)
        index: CodeSystemIndex = cached.value
        return index

    def _fetch(self, run: _Run, resource_type: str, url: str, version: str | None) -> Found | None:
        found = self.source.find(resource_type, url, version)
        marker = None if found is None else found.marker
        if found is not None and marker is None:
            run.cacheable = False
        run.dependencies.append((resource_type, url, version, marker))
        return found

    def _current(self, dependencies: Iterable[Dependency]) -> bool:
        for rtype, url, version, marker in dependencies:
            found = self.source.find(rtype, url, version)
            if (None if found is None else found.marker) != marker:
                return False
        return True

    # -- $expand -------------------------------------------------------------------

    def expansion(self, vs: Resource, marker: str | None = None) -> list[ExpansionEntry]:
        """Every code of the ValueSet, in compose order (cached when ``marker`` names the
        ValueSet's version)."""
        key = (vs.get("url"), vs.get("version"), marker) if marker is not None else None
        if key is not None:
            hit = _EXPANSIONS.get(key)
            if hit is not None and self._current(hit.dependencies):
                entries: list[ExpansionEntry] = hit.value
                if len(entries) > self.max_expansion:  # a service with a lower limit
                    raise _too_costly(str(vs.get("url")), self.max_expansion)
                return entries
        run = _Run()
        entries = list(self._expand(vs, frozenset(), run).values())
        if key is not None and run.cacheable:
            _EXPANSIONS.put(key, _Cached(tuple(run.dependencies), entries))
        return entries

    def expansion_of(self, canonical: str) -> list[ExpansionEntry]:
        """The expansion of the ValueSet with this canonical (``url|version``)."""
        found = self.find("ValueSet", canonical)
        return self.expansion(found.resource, found.marker)

    def expand(
        self,
        vs: Resource,
        *,
        marker: str | None = None,
        filter: str | None = None,
        count: int | None = None,
        offset: int = 0,
        display_language: str | None = None,
        include_designations: bool = False,
        active_only: bool = False,
        exclude_not_for_ui: bool = False,
        timestamp: str = "",
    ) -> Resource:
        """The ValueSet with an ``expansion`` (valueset-operation-expand): ``total`` codes
        after ``filter``, ``contains`` the page [offset, offset + count)."""
        if count is not None and count < 0 or offset < 0:
            raise TerminologyError("count and offset must not be negative", "invalid")
        entries = self.expansion(vs, marker)
        if active_only:
            entries = [e for e in entries if not e.inactive]
        if exclude_not_for_ui:
            entries = [e for e in entries if not e.abstract]
        if filter:
            entries = [e for e in entries if _text_matches(e, filter, display_language)]
        page = entries[offset : offset + count if count is not None else None]
        parameters: list[dict[str, Any]] = []
        if filter:
            parameters.append({"name": "filter", "valueString": filter})
        if count is not None:
            parameters.append({"name": "count", "valueInteger": count})
        if offset:
            parameters.append({"name": "offset", "valueInteger": offset})
        if display_language:
            parameters.append({"name": "displayLanguage", "valueCode": display_language})
        if include_designations:
            parameters.append({"name": "includeDesignations", "valueBoolean": True})
        if active_only:
            parameters.append({"name": "activeOnly", "valueBoolean": True})
        for system, version in dict.fromkeys((e.system, e.version) for e in entries if e.version):
            parameters.append({"name": "version", "valueUri": f"{system}|{version}"})
        seed = f"{vs.get('url')}|{vs.get('version')}|{marker}|{parameters}"
        expansion: dict[str, Any] = {
            "identifier": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, seed)}",
        }
        if timestamp:
            expansion["timestamp"] = timestamp
        expansion["total"] = len(entries)
        expansion["offset"] = offset
        if parameters:
            expansion["parameter"] = parameters
        contains = [_contains(e, display_language, include_designations) for e in page]
        if contains:
            expansion["contains"] = contains
        out = {k: v for k, v in vs.items() if k not in ("text", "meta", "expansion", "contained")}
        out["resourceType"] = "ValueSet"
        out["expansion"] = expansion
        return out

    def _expand(self, vs: Resource, trail: frozenset[str], run: _Run) -> dict[Key, ExpansionEntry]:
        url = str(vs.get("url") or "(no url)")
        if url in trail:
            raise TerminologyError(f"ValueSet {url} includes itself", "invalid")
        compose = vs.get("compose")
        if not isinstance(compose, dict):
            stored = (vs.get("expansion") or {}).get("contains")
            if isinstance(stored, list):
                return {(e.system, e.code): e for e in _flatten(stored)}
            raise TerminologyError(f"ValueSet {url} has no compose to expand", "not-supported")
        inner = trail | {url}
        codes: dict[Key, ExpansionEntry] = {}
        for include in _list(compose.get("include")):
            codes.update(self._set(include, inner, run, url))
            if len(codes) > self.max_expansion:
                raise _too_costly(url, self.max_expansion)
        for exclude in _list(compose.get("exclude")):
            for key in self._set(exclude, inner, run, url):
                codes.pop(key, None)
        if compose.get("inactive") is False:
            codes = {k: e for k, e in codes.items() if not e.inactive}
        return codes

    def _set(
        self, include: Any, trail: frozenset[str], run: _Run, vs_url: str
    ) -> dict[Key, ExpansionEntry]:
        if not isinstance(include, dict):
            raise TerminologyError(f"ValueSet {vs_url}: an include is not an object", "invalid")
        part: dict[Key, ExpansionEntry] | None = None
        system = include.get("system")
        if isinstance(system, str):
            part = self._system_part(system, include, run, vs_url)
        for imported in _list(include.get("valueSet")):
            if not isinstance(imported, str):
                raise TerminologyError(f"ValueSet {vs_url}: valueSet must be a URL", "invalid")
            url, version = split_canonical(imported)
            found = self._fetch(run, "ValueSet", url, version)
            if found is None:
                raise TerminologyError(
                    f"ValueSet {vs_url} includes ValueSet {imported}, which is not known here",
                    "not-supported",
                )
            other = self._expand(found.resource, trail, run)
            part = other if part is None else {k: v for k, v in part.items() if k in other}
        return part or {}

    def _system_part(
        self, system: str, include: dict[str, Any], run: _Run, vs_url: str
    ) -> dict[Key, ExpansionEntry]:
        version = include.get("version")
        if version is not None and not isinstance(version, str):
            raise TerminologyError(
                f"ValueSet {vs_url}: include.version must be a string", "invalid"
            )
        found = self._fetch(run, "CodeSystem", system, version)
        cs = self._code_system_of(found) if found is not None else None
        if cs is not None and not cs.holds_concepts:
            cs = None
        part: dict[Key, ExpansionEntry] = {}
        if "concept" in include:
            for c in _list(include["concept"]):
                code = c.get("code") if isinstance(c, dict) else None
                if not isinstance(code, str):
                    raise TerminologyError(f"ValueSet {vs_url}: a concept has no code", "invalid")
                entry = self._entry(cs, system, code, c, version)
                if entry is None:
                    raise TerminologyError(
                        f"ValueSet {vs_url} lists {system}#{code}, which CodeSystem "
                        f"{system} does not define",
                        "code-invalid",
                    )
                part[(system, entry.code)] = entry
            return part
        if cs is None:
            what = "the filters of" if "filter" in include else "all codes of"
            raise TerminologyError(
                f"ValueSet {vs_url} needs {what} {system}{'|' + version if version else ''}, "
                "a code system this server does not hold in full "
                "(only enumerated codes of external systems can be expanded)",
                "not-supported",
            )
        if "filter" in include:
            chosen: set[str] | None = None
            for f in _list(include["filter"]):
                matched = _filter_codes(cs, f, vs_url)
                chosen = matched if chosen is None else chosen & matched
            codes = [c for c in cs.order if chosen is None or c in chosen]
        else:
            codes = cs.order
        if len(codes) > self.max_expansion:
            raise _too_costly(vs_url, self.max_expansion)
        for code in codes:
            if not cs.selectable(code):
                continue
            entry = self._entry(cs, system, code, None, version)
            if entry is not None:
                part[(system, code)] = entry
        return part

    @staticmethod
    def _entry(
        cs: CodeSystemIndex | None,
        system: str,
        code: str,
        listed: dict[str, Any] | None,
        version: str | None,
    ) -> ExpansionEntry | None:
        listed = listed or {}
        designations = [_designation(d) for d in _list(listed.get("designation"))]
        ordinal = ordinal_value(listed)
        if cs is None:
            return ExpansionEntry(
                system,
                code,
                _str(listed.get("display")),
                version,
                tuple(d for d in designations if d),
                ordinal=ordinal,
            )
        concept = cs.concept(code)
        if concept is None:
            if cs.content == "complete":
                return None
            # A fragment / example code system: the listed code stands on its own.
            return ExpansionEntry(
                system,
                code,
                _str(listed.get("display")),
                cs.version or version,
                ordinal=ordinal,
            )
        designations += [_designation(d) for d in _list(concept.get("designation"))]
        return ExpansionEntry(
            system,
            str(concept["code"]),
            _str(listed.get("display")) or _str(concept.get("display")),
            cs.version or version,
            tuple(d for d in designations if d),
            abstract=not cs.selectable(code),
            inactive=cs.inactive(code),
            ordinal=ordinal if ordinal is not None else ordinal_value(concept),
        )

    def concept_entry(
        self, system: str, code: str, version: str | None = None
    ) -> ExpansionEntry | None:
        """The code as its CodeSystem defines it (display, designations, ordinal), or None
        when the CodeSystem does not define it; TerminologyError when it is not held."""
        cs = self.code_system(system, version)
        known = cs.code_of(code)
        return None if known is None else self._entry(cs, cs.url, known, None, cs.version)

    # -- $validate-code ------------------------------------------------------------

    def validate_in_value_set(
        self,
        vs: Resource,
        codings: Sequence[Coding],
        *,
        marker: str | None = None,
        display_language: str | None = None,
    ) -> Validation:
        """valueset-operation-validate-code: is one of ``codings`` in the ValueSet (and its
        display right)? Several codings are the codings of one CodeableConcept."""
        if not codings:
            raise TerminologyError("No code to validate", "invalid")
        entries = self.expansion(vs, marker)
        by_key = {(e.system, e.code): e for e in entries}
        messages: list[str] = []
        url = vs.get("url", "(the value set)")
        for coding in codings:
            if coding.system is None:
                entry = next((e for e in entries if e.code == coding.code), None)
            else:
                entry = by_key.get((coding.system, coding.code))
            shown = f"{coding.system or ''}#{coding.code}"
            if entry is None:
                messages.append(self._absent_message(coding, url))
                continue
            if coding.version and entry.version and coding.version != entry.version:
                messages.append(
                    f"{shown}: version {coding.version} is not the version in {url} "
                    f"({entry.version})"
                )
                continue
            display = entry.display_in(display_language)
            if coding.display is not None and not _display_ok(coding.display, entry):
                return Validation(
                    False,
                    f"{shown}: the display {coding.display!r} is not a display of this code; "
                    f"it should be {display!r}",
                    display,
                )
            return Validation(True, None, display)
        return Validation(False, "; ".join(messages))

    def _absent_message(self, coding: Coding, vs_url: str) -> str:
        shown = f"{coding.system or ''}#{coding.code}"
        if coding.system is not None:
            found = self.source.find("CodeSystem", coding.system, None)
            if found is not None and found.resource.get("content") == "complete":
                cs = self._code_system_of(found)
                if cs.concept(coding.code) is None:
                    return f"Unknown code {shown}: CodeSystem {coding.system} does not define it"
                return f"The code {shown} is valid in its code system but is not in {vs_url}"
        return f"The code {shown} is not in {vs_url}"

    def validate_in_code_system(self, found: Found, coding: Coding) -> Validation:
        """codesystem-operation-validate-code: does the CodeSystem define the code?"""
        cs = self._code_system_of(found)
        _require_concepts(cs)
        shown = f"{cs.url}#{coding.code}"
        if coding.system is not None and coding.system != cs.url:
            return Validation(False, f"{coding.system}#{coding.code} is not from {cs.url}")
        concept = cs.concept(coding.code)
        if concept is None:
            return Validation(False, f"Unknown code {shown}")
        entry = self._entry(cs, cs.url, coding.code, None, cs.version)
        display = entry.display if entry else concept.get("display")
        if (
            coding.display is not None
            and entry is not None
            and not _display_ok(coding.display, entry)
        ):
            return Validation(
                False,
                f"{shown}: the display {coding.display!r} is not a display of this code; "
                f"it should be {display!r}",
                display,
            )
        return Validation(True, None, display)

    # -- $lookup -------------------------------------------------------------------

    def lookup(
        self,
        coding: Coding,
        *,
        properties: Sequence[str] = (),
        display_language: str | None = None,
    ) -> LookupResult:
        """codesystem-operation-lookup: what the code system says about the code."""
        if coding.system is None:
            raise TerminologyError("$lookup needs the code's system", "invalid")
        cs = self.code_system(coding.system, coding.version)
        _require_concepts(cs)
        code = cs.code_of(coding.code)
        if code is None:
            raise TerminologyError(f"Unknown code {coding.system}#{coding.code}")
        entry = self._entry(cs, cs.url, code, None, cs.version)
        assert entry is not None
        found_properties: list[tuple[str, Any]] = []
        for name, value in cs.properties(code):
            found_properties.append((name, value))
        found_properties += [("parent", p) for p in cs.parents.get(code, [])]
        found_properties += [("child", c) for c in cs.children.get(code, [])]
        if properties:
            wanted = set(properties)
            found_properties = [(n, v) for n, v in found_properties if n in wanted]
        return LookupResult(
            system=cs.url,
            code=code,
            name=cs.name or cs.url,
            version=cs.version,
            display=entry.display_in(display_language),
            designations=entry.designations,
            properties=tuple(found_properties),
        )

    # -- $subsumes -----------------------------------------------------------------

    def subsumption_index(self, system: str, version: str | None = None) -> CodeSystemIndex:
        """The code system, checked to hold an is-a hierarchy (for subsumption)."""
        cs = self.code_system(system, version)
        _require_concepts(cs, ", so subsumption is unknown")
        if not cs.subsumption:
            raise TerminologyError(
                f"CodeSystem {system} has a {cs.hierarchy_meaning} hierarchy, which does not "
                "define subsumption (only is-a does)",
                "not-supported",
            )
        return cs

    def subsumes(self, system: str, code_a: str, code_b: str, version: str | None = None) -> str:
        """codesystem-operation-subsumes: equivalent | subsumes | subsumed-by | not-subsumed."""
        cs = self.subsumption_index(system, version)
        a, b = cs.code_of(code_a), cs.code_of(code_b)
        for given, known in ((code_a, a), (code_b, b)):
            if known is None:
                raise TerminologyError(f"Unknown code {system}#{given}", "code-invalid")
        assert a is not None and b is not None
        if a == b:
            return "equivalent"
        if b in cs.descendants(a):
            return "subsumes"
        if a in cs.descendants(b):
            return "subsumed-by"
        return "not-subsumed"

    def related_codes(
        self, system: str, code: str, direction: str, version: str | None = None
    ) -> set[str]:
        """The code and the codes it subsumes (``below``) or that subsume it (``above``):
        the token ``:below`` / ``:above`` search modifiers (search.html#token)."""
        try:
            cs = self.subsumption_index(system, version)
        except TerminologyError as exc:
            if exc.code != "not-found":
                raise
            raise TerminologyError(
                f"no hierarchy is known for {system}: the CodeSystem is not held here",
                "not-supported",
            ) from exc
        known = cs.code_of(code)
        if known is None:
            raise TerminologyError(f"Unknown code {system}#{code}", "code-invalid")
        related = cs.descendants(known) if direction == "below" else cs.ancestors(known)
        return {known, *related}

    # -- $translate ----------------------------------------------------------------

    def translate(
        self,
        coding: Coding,
        *,
        concept_maps: Sequence[Resource] | None = None,
        source_vs: str | None = None,
        target_vs: str | None = None,
        target_system: str | None = None,
        reverse: bool = False,
    ) -> Translation:
        """conceptmap-operation-translate over the given ConceptMaps, or every map the
        source holds from (``reverse``: to) the coding's system."""
        if coding.system is None:
            raise TerminologyError("$translate needs the code's system", "invalid")
        if concept_maps is None:
            maps = [f.resource for f in self.source.concept_maps(coding.system, reverse)]
            maps = [m for m in maps if _map_scope_ok(m, source_vs, target_vs, reverse)]
        else:
            maps = list(concept_maps)
        matches: list[TranslationMatch] = []
        for cm in maps:
            matches += _map_matches(cm, coding, target_system, reverse)
        matches = list(dict.fromkeys(matches))
        result = any(m.equivalence not in _NO_MATCH for m in matches)
        shown = f"{coding.system}#{coding.code}"
        if not matches:
            message: str | None = f"No mapping of {shown} was found"
        elif not result:
            message = f"{shown} is mapped as unmatched: no equivalent target exists"
        else:
            message = None
        return Translation(result, message, tuple(matches))


# --- helpers ------------------------------------------------------------------------


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _require_concepts(cs: CodeSystemIndex, why: str = "") -> None:
    if not cs.holds_concepts:
        raise TerminologyError(
            f"CodeSystem {cs.url} holds no concepts here (content {cs.content}){why}",
            "not-supported",
        )


def _too_costly(url: str, limit: int) -> TerminologyError:
    return TerminologyError(
        f"The expansion of {url} has more than {limit} codes, this server's limit; "
        "use a filter or a smaller value set",
        "too-costly",
    )


def _designation(d: Any) -> Designation | None:
    if not isinstance(d, dict) or not isinstance(d.get("value"), str):
        return None
    use = d.get("use") if isinstance(d.get("use"), dict) else None
    return Designation(d["value"], d.get("language"), use)


def _flatten(contains: list[Any]) -> Iterable[ExpansionEntry]:
    for item in contains:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("code"), str) and isinstance(item.get("system"), str):
            yield ExpansionEntry(
                item["system"],
                item["code"],
                _str(item.get("display")),
                _str(item.get("version")),
                abstract=item.get("abstract") is True,
                inactive=item.get("inactive") is True,
                ordinal=ordinal_value(item),
            )
        yield from _flatten(_list(item.get("contains")))


def _contains(entry: ExpansionEntry, language: str | None, designations: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if entry.ordinal is not None:
        # A whole ordinal goes out as written in the content ("2", not "2.0"): a FHIR
        # decimal's precision is part of its value (datatypes.html#decimal).
        ordinal = entry.ordinal
        written = int(ordinal) if ordinal.is_integer() else ordinal
        out["extension"] = [{"url": ORDINAL_VALUE, "valueDecimal": written}]
    out["system"] = entry.system
    if entry.abstract:
        out["abstract"] = True
    if entry.inactive:
        out["inactive"] = True
    if entry.version:
        out["version"] = entry.version
    out["code"] = entry.code
    display = entry.display_in(language)
    if display:
        out["display"] = display
    if designations and entry.designations:
        out["designation"] = [d.as_fhir() for d in entry.designations]
    return out


def _text_matches(entry: ExpansionEntry, text: str, language: str | None) -> bool:
    """The $expand ``filter``: every word of it occurs in the code or a display
    (case-insensitive); the operation leaves the matching rule to the server."""
    haystack = " ".join(
        [entry.code, entry.display or "", *(d.value for d in entry.designations)]
    ).lower()
    return all(word in haystack for word in text.lower().split())


def _display_ok(display: str, entry: ExpansionEntry) -> bool:
    valid = {entry.display or "", *(d.value for d in entry.designations)}
    return display in valid or display.lower() in {v.lower() for v in valid}


def _filter_codes(cs: CodeSystemIndex, f: Any, vs_url: str) -> set[str]:
    """The codes of ``cs`` one compose filter selects (valueset.html#compose, filter-operator)."""
    if not isinstance(f, dict):
        raise TerminologyError(f"ValueSet {vs_url}: a filter is not an object", "invalid")
    prop, op, value = f.get("property"), f.get("op"), f.get("value")
    if not isinstance(prop, str) or not isinstance(op, str) or not isinstance(value, str):
        raise TerminologyError(
            f"ValueSet {vs_url}: a filter needs property, op and value", "invalid"
        )
    every = set(cs.order)
    if prop in ("concept", "code") and op in ("is-a", "descendent-of", "is-not-a", "generalizes"):
        if not cs.subsumption:
            raise TerminologyError(
                f"ValueSet {vs_url}: filter {op} needs an is-a hierarchy; {cs.url} has a "
                f"{cs.hierarchy_meaning} hierarchy",
                "not-supported",
            )
        base = cs.code_of(value)
        if base is None:
            raise TerminologyError(
                f"ValueSet {vs_url}: filter {op} {value}: {cs.url} has no such code",
                "code-invalid",
            )
        if op == "is-a":
            return {base, *cs.descendants(base)}
        if op == "descendent-of":
            return cs.descendants(base)
        if op == "generalizes":
            return {base, *cs.ancestors(base)}
        return every - {base, *cs.descendants(base)}
    values = {v.strip() for v in value.split(",")} if op == "in" else {value}
    if op == "regex":
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise TerminologyError(
                f"ValueSet {vs_url}: {value!r} is not a regular expression", "invalid"
            ) from exc
    if op not in ("=", "in", "regex", "exists"):
        raise TerminologyError(
            f"ValueSet {vs_url}: filter operator {op!r} is not supported", "not-supported"
        )

    def texts(code: str) -> list[str]:
        if prop in ("concept", "code"):
            return [code]
        if prop == "display":
            concept = cs.concepts[code]
            return [concept["display"]] if isinstance(concept.get("display"), str) else []
        if prop == "parent":
            return cs.parents.get(code, [])
        if prop == "child":
            return cs.children.get(code, [])
        return [value_text(v) for c, v in cs.properties(code) if c == prop]

    if op == "exists":
        wanted = value == "true"
        return {code for code in every if bool(texts(code)) == wanted}
    if op == "regex":
        return {code for code in every if any(pattern.fullmatch(t) for t in texts(code))}
    return {code for code in every if values & set(texts(code))}


def _map_scope_ok(
    cm: Resource, source_vs: str | None, target_vs: str | None, reverse: bool
) -> bool:
    source = cm.get("sourceUri") or cm.get("sourceCanonical")
    target = cm.get("targetUri") or cm.get("targetCanonical")
    if reverse:
        source, target = target, source
    if source_vs is not None and source != source_vs:
        return False
    return target_vs is None or target == target_vs


def _map_matches(
    cm: Resource, coding: Coding, target_system: str | None, reverse: bool
) -> list[TranslationMatch]:
    url = str(cm.get("url", ""))
    out: list[TranslationMatch] = []
    for group in _list(cm.get("group")):
        if not isinstance(group, dict):
            continue
        source, target = group.get("source"), group.get("target")
        if reverse:
            source, target = target, source
        if source != coding.system or (target_system is not None and target != target_system):
            continue
        for element in _list(group.get("element")):
            if not isinstance(element, dict):
                continue
            for t in _list(element.get("target")):
                if not isinstance(t, dict):
                    continue
                equivalence = str(t.get("equivalence", "equivalent"))
                comment = _str(t.get("comment"))
                if not reverse and element.get("code") == coding.code:
                    out.append(
                        TranslationMatch(
                            equivalence, target, t.get("code"), t.get("display"), url, comment
                        )
                    )
                elif reverse and t.get("code") == coding.code:
                    out.append(
                        TranslationMatch(
                            _REVERSED_EQUIVALENCE.get(equivalence, equivalence),
                            target,
                            element.get("code"),
                            element.get("display"),
                            url,
                            comment,
                        )
                    )
    return out


class ValueSetMembership:
    """``(ValueSet canonical, system, code) -> bool | None`` over a service: is the code in
    the ValueSet (a ``None`` system matches the code in any system, as for a bare ``code``
    element), or ``None`` when the ValueSet is unknown or cannot be expanded (FHIR R4
    terminologies.html#strength: a binding whose membership cannot be known is not
    checked). What the profile validator consults for required and extensible bindings.

    Each ValueSet is expanded once per instance (through the service's expansion cache), so
    one instance should live as long as the source's view of the content (one request or
    write transaction in the server)."""

    def __init__(self, service: TerminologyService) -> None:
        self.service = service
        self._codes: dict[str, tuple[dict[str, frozenset[str]], frozenset[str]] | None] = {}

    def codes(self, canonical: str) -> tuple[dict[str, frozenset[str]], frozenset[str]] | None:
        """(codes by system, all codes) of the ValueSet, or None."""
        if canonical not in self._codes:
            try:
                entries = self.service.expansion_of(canonical)
            except TerminologyError:
                self._codes[canonical] = None
            else:
                grouped: dict[str, set[str]] = {}
                for entry in entries:
                    grouped.setdefault(entry.system, set()).add(entry.code)
                by_system = {s: frozenset(c) for s, c in grouped.items()}
                self._codes[canonical] = (by_system, frozenset(e.code for e in entries))
        return self._codes[canonical]

    def __call__(self, canonical: str, system: str | None, code: str) -> bool | None:
        found = self.codes(canonical)
        if found is None:
            return None
        by_system, every = found
        return code in every if system is None else code in by_system.get(system, ())
