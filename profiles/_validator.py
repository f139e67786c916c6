"""The walk: one JSON resource against the element trees of its StructureDefinitions.

For every object the walk takes the element definition that describes it and its *frame* (the
children by JSON name: explicit children in the snapshot, else the children of the type's
StructureDefinition or of the type profile). It then checks, per FHIR R4:

- JSON shape (json.html): known properties only, arrays exactly where the base repeats, no
  empty arrays or objects, ``null`` only as an array placeholder, ``_x`` only for primitives;
- cardinality of every child (profiling.html#cardinality), slices included;
- types and choice types ("valueQuantity" must be an allowed type of ``value[x]``);
- primitive values (:mod:`profiles._primitives`) and the narrative (:mod:`profiles._xhtml`);
- fixed[x] (exact) and pattern[x] (contained-in) values;
- required and extensible bindings (:mod:`profiles._bindings`);
- slicing: value, pattern, exists, type and profile discriminators; open, closed and
  openAtEnd rules; ordered slices;
- extensions against their definitions: known URL, no version, allowed context, modifier or
  not, sub-extensions and value types through the definition's own snapshot;
- invariants (:mod:`profiles._invariants`), once per constraint key and location;
- Reference target types implied by literal references.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from profiles import _conformance, _datatype_rules, _invariants, _xhtml
from profiles._bundle import bundle_findings
from profiles._definitions import (
    PRIMITIVE_TYPES,
    ElementDefinition,
    StructureDefinition,
    is_resource_type,
    registry,
)
from profiles._extensions import CROSS_VERSION, context_allows
from profiles._frames import Frame, frame_for
from profiles._issue import Issue
from profiles._primitives import check_primitive, is_absolute_uri
from profiles._slicing import extension_slice_url, in_slice
from profiles._values import describe, number

_MISSING: Any = object()
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(\s[^<>]*)?/?>")
_NUMERIC = ("decimal", "integer", "positiveInt", "unsignedInt")


@dataclass(frozen=True, slots=True)
class ValidationOptions:
    """How strict to be where the reference validator leaves a choice to the caller.

    Severities are "error", "warning", "information" or "ignore".

    - ``unknown_extensions``: an extension whose definition is not held ("error", as the HL7
      validator by default). URLs containing one of ``example_extension_domains`` are
      accepted without a definition, as the HL7 validator does for example URLs.
    - ``unknown_profiles``: a profile in ``meta.profile`` that is not held ("error"; the HL7
      validator warns). A profile passed explicitly must always be known.
    - ``report_unevaluated``: an information issue for each invariant that could not be
      evaluated (they are counted either way, see ``unevaluable_invariants``).
    - ``no_html_in_markdown``: reject markdown with HTML tags (the HL7 validator's
      ``noHtmlInMarkdown`` option).
    - ``validate_code``: ``(ValueSet canonical, system or None, code) -> bool | None``,
      asked for required and extensible bindings (and ``memberOf``, slice discriminators,
      ``answerValueSet``) whose ValueSet is not an enumerable R4 core one; ``None`` from it
      means "cannot tell" (not checked). Default: the packaged terminology service (our
      content and the R4 core ValueSets). ``terminology.ValueSetMembership`` makes one
      from any ``TerminologyService`` (the server's reaches stored ValueSets).
    """

    unknown_extensions: str = "error"
    unknown_profiles: str = "error"
    example_extension_domains: tuple[str, ...] = ("example.org/", "acme.com/")
    check_invariants: bool = True
    report_unevaluated: bool = True
    no_html_in_markdown: bool = False
    validate_code: Callable[[str, str | None, str], bool | None] | None = None


@dataclass(slots=True)
class Item:
    """One occurrence of an element: its value, its ``_x`` twin, its type and location."""

    value: Any
    extension: Any
    type: str | None
    location: str


# --- the walk ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Walk:
    options: ValidationOptions
    issues: list[Issue] = field(default_factory=list)
    _reported: set[tuple[str, str, str, str]] = field(default_factory=set)
    _invariants_done: set[tuple[str, str]] = field(default_factory=set)

    def report(self, severity: str, code: str, message: str, location: str, rule: str) -> None:
        key = (severity, code, message, location)
        if key in self._reported:
            return
        self._reported.add(key)
        self.issues.append(Issue(severity, code, message, (location,) if location else (), rule))

    # -- resources ------------------------------------------------------------------------

    def resource(
        self,
        resource: Any,
        location: str,
        profiles: Sequence[StructureDefinition],
        root_resource: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(resource, dict):
            self.report("error", "structure", "A resource must be a JSON object", location, "json")
            return
        resource_type = resource.get("resourceType")
        if not isinstance(resource_type, str):
            self.report("error", "structure", "The resource has no resourceType", location, "json")
            return
        base = registry().of_type(resource_type)
        if base is None or not is_resource_type(resource_type) or base.abstract:
            self.report(
                "error",
                "not-supported",
                f"Unknown resource type '{resource_type}' (not an R4 resource)",
                location,
                "resource-type",
            )
            return
        scope = _invariants.Scope(resource, root_resource or resource)
        # A profile's snapshot is the base snapshot with the differential merged in
        # (profiling.html#snapshot: the complete content of the structure), so a walk over
        # a profile of this type already checks everything the base walk would: the base is
        # walked only when no such profile is requested (halves write-time validation). A
        # snapshot with fewer elements than the base is not complete: the base is walked too.
        fitting = [
            p
            for p in profiles
            if p.type == resource_type
            and p.derivation == "constraint"
            and len(p.by_id) >= len(base.by_id)
        ]
        for definition in (*([] if fitting else [base]), *profiles):
            if definition.type != resource_type:
                self.report(
                    "error",
                    "invalid",
                    f"Profile {definition.url} constrains {definition.type}, not {resource_type}",
                    location,
                    "profile",
                )
                continue
            self.complex(resource, definition.root, resource_type, location, resource_type, scope)
        found = bundle_findings(resource, location) if resource_type == "Bundle" else []
        for finding in (*found, *_conformance.findings(resource, location)):
            self.report(
                finding.severity,
                finding.code,
                finding.diagnostics,
                finding.expression[0] if finding.expression else location,
                finding.rule,
            )

    def nested_profiles(self, resource: dict[str, Any], location: str) -> list[StructureDefinition]:
        """Profiles a contained or bundled resource claims; unknown ones are warned about."""
        found: list[StructureDefinition] = []
        meta = resource.get("meta")
        claimed = meta.get("profile") if isinstance(meta, dict) else None
        for index, url in enumerate(claimed if isinstance(claimed, list) else []):
            if not isinstance(url, str):
                continue
            definition = registry().get(url)
            if definition is None:
                # A profile only claimed inside a Bundle or contained resource is at most a
                # warning: the outer resource is what the caller asked about.
                severity = self.options.unknown_profiles
                if severity == "ignore":
                    continue
                self.report(
                    "warning" if severity == "error" else severity,
                    "not-found",
                    f"Profile {url} is not known to this validator; the resource was checked "
                    "against its base definition only",
                    f"{location}.meta.profile[{index}]",
                    "profile-unknown",
                )
            elif definition.kind == "resource":
                found.append(definition)
        return found

    # -- objects ---------------------------------------------------------------------------

    def complex(
        self,
        value: Any,
        element: ElementDefinition,
        type_code: str | None,
        location: str,
        path: str,
        scope: _invariants.Scope,
        extension_url: str | None = None,
    ) -> None:
        if not isinstance(value, dict):
            self.report(
                "error",
                "structure",
                f"Expected a JSON object for {type_code or element.path}, found {describe(value)}",
                location,
                "json",
            )
            return
        is_resource = value is scope.resource
        if not value:
            self.report(
                "error", "structure", "Empty objects are not allowed (ele-1)", location, "ele-1"
            )
            return
        if not is_resource and set(value) <= {"id"}:
            self._ele_1(location)
        frame = frame_for(element, type_code)
        grouped: dict[int, list[str]] = {}
        for key in value:
            if is_resource and key == "resourceType":
                continue
            name = key[1:] if key.startswith("_") else key
            named = frame.by_name.get(name)
            if named is None:
                self._unknown_property(frame, key, location)
                continue
            child, child_type = named
            if key.startswith("_"):
                if child_type not in PRIMITIVE_TYPES:
                    self._unknown_property(frame, key, location)
                    continue
                if name in value:
                    continue  # handled with its value
            names = grouped.setdefault(id(child), [])
            if name not in names:
                names.append(name)
        for child in frame.children:
            names = grouped.get(id(child), [])
            items: list[Item] = []
            for name in names:
                items.extend(self._items(value, name, child, frame.by_name[name][1], location))
            if len(items) < child.min:
                self.report(
                    "error",
                    "required",
                    f"{child.path}: minimum required = {child.min}, but only found {len(items)}",
                    location,
                    "cardinality",
                )
            if child.max is not None and len(items) > child.max:
                self.report(
                    "error",
                    "structure",
                    f"{child.path}: max allowed = {child.max}, but found {len(items)}",
                    location,
                    "cardinality",
                )
            child_path = f"{path}.{child.name}"
            for item in items:
                self.item(child, item, child_path, element, type_code, scope, extension_url)
            if child.slicing is not None and (child.slices or child.slicing.rules == "closed"):
                self.slicing(
                    child, items, location, child_path, element, type_code, scope, extension_url
                )
        if type_code == "Coding":
            _datatype_rules.coding(value, location, self.report)
        elif type_code == "Identifier":
            _datatype_rules.identifier(value, location, self.report)
        elif type_code == "Attachment":
            _datatype_rules.attachment(value, location, self.report)
        if self.options.check_invariants:
            self.invariants(element.constraints, value, frame.type_path, location, scope)
            if frame.type_root is not None and frame.type_root is not element:
                self.invariants(
                    frame.type_root.constraints, value, frame.type_path, location, scope
                )

    def _ele_1(self, location: str) -> None:
        self.report(
            "error",
            "invariant",
            "Constraint failed: ele-1: 'All FHIR elements must have a @value or children'",
            location,
            "ele-1",
        )

    def _unknown_property(self, frame: Frame, key: str, location: str) -> None:
        name = key.lstrip("_")
        for stem, child in frame.choice_stems.items():
            if name.startswith(stem) and name[len(stem) : len(stem) + 1].isupper():
                allowed = ", ".join(child.type_codes)
                suffix = name[len(stem) :]
                lowered = suffix[0].lower() + suffix[1:]
                shown = lowered if lowered in PRIMITIVE_TYPES else suffix
                self.report(
                    "error",
                    "structure",
                    f"The type '{shown}' is not allowed for {child.path} (allowed: {allowed})",
                    f"{location}.{key}",
                    "type",
                )
                return
        self.report(
            "error", "structure", f"Unrecognized property '{key}'", f"{location}.{key}", "json"
        )

    def _items(
        self,
        parent: dict[str, Any],
        name: str,
        child: ElementDefinition,
        type_code: str | None,
        location: str,
    ) -> list[Item]:
        value = parent.get(name, _MISSING)
        twin = parent.get("_" + name, _MISSING) if type_code in PRIMITIVE_TYPES else _MISSING
        if child.is_choice:
            here = f"{location}.{child.name[:-3]}.ofType({type_code})"
        else:
            here = f"{location}.{name}"
        if child.array:
            for given, label in ((value, name), (twin, "_" + name)):
                if given is not _MISSING and not isinstance(given, list):
                    self.report(
                        "error",
                        "structure",
                        f"The property '{label}' must be an array, not {describe(given)}",
                        here,
                        "json",
                    )
                    return []
                if isinstance(given, list) and not given:
                    self.report(
                        "error",
                        "invalid",
                        "Array cannot be empty - the property should not be present if it "
                        "has no values",
                        here,
                        "empty-array",
                    )
                    return []
            values = value if value is not _MISSING else []
            twins = twin if twin is not _MISSING else []
            if value is not _MISSING and twin is not _MISSING and len(values) != len(twins):
                # json.html#primitive: a value array and its _ twin line up item by item.
                self.report(
                    "error",
                    "structure",
                    f"The arrays '{name}' and '_{name}' differ in length",
                    here,
                    "json",
                )
            items = []
            for index in range(max(len(values), len(twins))):
                item_value = values[index] if index < len(values) else None
                item_twin = twins[index] if index < len(twins) else None
                if item_value is None and item_twin is None:
                    self.report(
                        "error",
                        "structure",
                        "null is only allowed in an array as the partner of a value in the "
                        "twin array",
                        f"{here}[{index}]",
                        "json",
                    )
                    continue
                items.append(
                    Item(
                        _MISSING if item_value is None else item_value,
                        _MISSING if item_twin is None else item_twin,
                        type_code,
                        f"{here}[{index}]",
                    )
                )
            return items
        for given, label in ((value, name), (twin, "_" + name)):
            if isinstance(given, list):
                self.report(
                    "error",
                    "structure",
                    f"The property '{label}' must not be an array (it does not repeat)",
                    here,
                    "json",
                )
                return []
            if given is None:
                self.report(
                    "error",
                    "structure",
                    f"The property '{label}' must be a value, not null",
                    here,
                    "json",
                )
                return []
        return [Item(value, twin, type_code, here)]

    # -- one occurrence --------------------------------------------------------------------

    def item(
        self,
        child: ElementDefinition,
        item: Item,
        path: str,
        parent: ElementDefinition,
        parent_type: str | None,
        scope: _invariants.Scope,
        parent_extension_url: str | None,
    ) -> None:
        type_code = item.type
        value = item.value
        if type_code in PRIMITIVE_TYPES:
            self.primitive(child, item, path, parent, scope)
        elif type_code == "Resource" or (type_code is not None and is_resource_type(type_code)):
            if isinstance(value, dict):
                contained = child.name == "contained"
                self.resource(
                    value,
                    item.location,
                    self.nested_profiles(value, item.location),
                    scope.root_resource if contained else None,
                )
            else:
                self.report(
                    "error",
                    "structure",
                    "Expected a resource (a JSON object)",
                    item.location,
                    "json",
                )
            return
        elif type_code == "Extension" and child.name in ("extension", "modifierExtension"):
            self.extension(
                child, value, item.location, path, parent, parent_type, scope, parent_extension_url
            )
        else:
            self.complex(value, child, type_code, item.location, path, scope)
        if value is _MISSING:
            if child.binding is not None and child.binding[0] == "required" and type_code == "code":
                self.report(
                    "error",
                    "code-invalid",
                    f"No code provided, and a code is required from the value set "
                    f"{child.binding[1]}",
                    item.location,
                    "binding",
                )
            return
        _datatype_rules.fixed_and_pattern(child, value, item.location, self.report)
        if child.binding is not None:
            _datatype_rules.binding(child, value, type_code, item.location, self.report)
        if type_code == "Reference":
            _datatype_rules.reference_target(child, value, item.location, self.report)

    def primitive(
        self,
        child: ElementDefinition,
        item: Item,
        path: str,
        parent: ElementDefinition,
        scope: _invariants.Scope,
    ) -> None:
        type_code = item.type or "string"
        value = item.value
        if value is not _MISSING:
            if isinstance(value, (dict, list)):
                self.report(
                    "error",
                    "structure",
                    f"Expected a JSON primitive for {type_code}, found {describe(value)}",
                    item.location,
                    "json",
                )
                return
            is_resource_id = (
                child.name == "id"
                and parent.path == parent.structure.type
                and (parent.structure.kind == "resource")
            )
            problems = check_primitive(type_code, value, is_resource_id=is_resource_id)
            for problem in problems:
                self.report(
                    problem.severity, problem.code, problem.message, item.location, problem.rule
                )
            if not any(p.severity == "error" for p in problems):
                self._primitive_limits(child, type_code, value, item.location)
                if type_code == "markdown" and self.options.no_html_in_markdown:
                    self._markdown_without_html(value, item.location)
            if self.options.check_invariants:
                self.invariants(child.constraints, value, type_code, item.location, scope)
        if item.extension is not _MISSING:
            twin = item.extension
            if value is _MISSING and isinstance(twin, dict) and twin and "extension" not in twin:
                self._ele_1(item.location)
            # Against the element itself (typed as the primitive), so that extension contexts
            # see ``HumanName.family`` and not ``string``.
            self.complex(twin, child, type_code, item.location, path, scope)

    def _primitive_limits(
        self, child: ElementDefinition, type_code: str, value: Any, location: str
    ) -> None:
        if (
            child.max_length is not None
            and isinstance(value, str)
            and len(value) > child.max_length
        ):
            self.report(
                "error",
                "invalid",
                f"value is longer than permitted maximum length of {child.max_length}",
                location,
                "max-length",
            )
        if type_code == "xhtml" and isinstance(value, str):
            _, problem = _xhtml.parse_div(value)
            if problem is not None:
                self.report("error", "invalid", problem, location, "xhtml")
            for href in _xhtml.unfollowable_links(value):
                scheme = href.split(":", 1)[0]
                self.report(
                    "error",
                    "invalid",
                    f"Hyperlink scheme '{scheme}' in '{href}' is not a valid hyperlinkable scheme",
                    location,
                    "xhtml-link",
                )
        for bound, is_min in ((child.min_value, True), (child.max_value, False)):
            if bound is None:
                continue
            limit = bound[1]
            if type_code in _NUMERIC:
                left, right = number(value), number(limit)
                if left is None or right is None:
                    continue
                broken = left < right if is_min else left > right
            elif isinstance(value, str) and isinstance(limit, str):
                broken = value < limit if is_min else value > limit
            else:
                continue
            if broken:
                word = "minimum" if is_min else "maximum"
                self.report(
                    "error",
                    "value",
                    f"The value {value} is outside the permitted {word} value {limit}",
                    location,
                    "min-max-value",
                )

    def _markdown_without_html(self, value: str, location: str) -> None:
        found = _HTML_TAG.search(value)
        if found is not None:
            self.report(
                "error",
                "invalid",
                f"The markdown contains content that appears to be an embedded HTML tag "
                f"starting at {found.group(0)!r}",
                location,
                "markdown-html",
            )

    # -- extensions -------------------------------------------------------------------------

    def extension(
        self,
        child: ElementDefinition,
        value: Any,
        location: str,
        path: str,
        host: ElementDefinition,
        host_type: str | None,
        scope: _invariants.Scope,
        parent_extension_url: str | None,
    ) -> None:
        if not isinstance(value, dict):
            self.complex(value, child, "Extension", location, path, scope)
            return
        url = value.get("url")
        if not isinstance(url, str):
            self.report(
                "error",
                "invalid",
                "Extension.url is required in order to identify, use and validate the extension",
                location,
                "extension-url",
            )
            self.complex(value, child, "Extension", location, path, scope)
            return
        if not is_absolute_uri(url):
            if (
                child.slice_name is not None
                or host_type == "Extension"
                and not host.structure.is_extension
            ):
                pass  # matched to a slice already, or inside an extension we hold no definition of
            elif not child.structure.is_extension:
                self.report(
                    "error",
                    "invalid",
                    f"The extension URL '{url}' must be absolute (only sub-extensions of a "
                    "complex extension have relative URLs)",
                    location,
                    "extension-url",
                )
            elif not any(extension_slice_url(s) == url for s in child.slices):
                self.report(
                    "error",
                    "invalid",
                    f"Sub-extension url '{url}' is not defined by the Extension "
                    f"{child.structure.url}",
                    location,
                    "extension-url",
                )
            self.complex(value, child, "Extension", location, path, scope)
            return
        plain, _, version = url.partition("|")
        if version:
            self.report(
                "error",
                "invalid",
                f"The extension URL must not contain a version ({url})",
                location,
                "extension-url",
            )
        definition = registry().get(plain)
        if definition is None and CROSS_VERSION.match(plain):
            # versions.html#extensions: every element of another FHIR version has an implied
            # extension URL; their definitions are generated from that version, not held here.
            self.report(
                "information",
                "informational",
                f"Cross-version extension {plain} was not checked against its definition",
                location,
                "extension-cross-version",
            )
            self.complex(value, child, "Extension", location, path, scope)
            return
        if definition is None or not definition.is_extension:
            if not any(domain in plain for domain in self.options.example_extension_domains):
                severity = self.options.unknown_extensions
                if severity != "ignore":
                    self.report(
                        severity,
                        "structure",
                        f"The extension {plain} could not be found so is not allowed here",
                        location,
                        "extension-unknown",
                    )
            self.complex(value, child, "Extension", location, path, scope)
            return
        if not context_allows(definition, host, host_type, path, parent_extension_url):
            allowed = ", ".join(f"{kind} {expr}" for kind, expr in definition.context)
            self.report(
                "error",
                "structure",
                f"The extension {plain} is not allowed to be used at this point (allowed: "
                f"{allowed}; this element is {host_type or host.path} at {path.rsplit('.', 1)[0]})",
                location,
                "extension-context",
            )
        is_modifier = definition.root.is_modifier
        if child.name == "extension" and is_modifier:
            self.report(
                "error",
                "structure",
                f"The Extension '{plain}' must not be used as an extension (it's a "
                "modifierExtension)",
                location,
                "extension-modifier",
            )
        elif child.name == "modifierExtension" and not is_modifier:
            self.report(
                "error",
                "structure",
                f"The Extension '{plain}' must not be used as a modifierExtension (it is not a "
                "modifier)",
                location,
                "extension-modifier",
            )
        self.complex(value, definition.root, "Extension", location, path, scope, plain)

    # -- element-level value rules ------------------------------------------------------------

    # -- slicing ------------------------------------------------------------------------------

    def slicing(
        self,
        sliced: ElementDefinition,
        items: list[Item],
        location: str,
        path: str,
        parent: ElementDefinition,
        parent_type: str | None,
        scope: _invariants.Scope,
        parent_extension_url: str | None,
    ) -> None:
        assert sliced.slicing is not None
        slices = sliced.slices
        assigned: list[int | None] = []
        for item in items:
            assigned.append(
                next(
                    (
                        i
                        for i, s in enumerate(slices)
                        if in_slice(item.value, item.type, s, sliced, self._conforms)
                    ),
                    None,
                )
            )
        url = sliced.structure.url
        for index, element in enumerate(slices):
            count = assigned.count(index)
            if count < element.min:
                found = (
                    "a matching slice is required, but not found"
                    if count == 0
                    else f"minimum required = {element.min}, but only found {count}"
                )
                self.report(
                    "error",
                    "structure",
                    f"Slice '{element.id}': {found} (from {url})",
                    location,
                    "slice-cardinality",
                )
            if element.max is not None and count > element.max:
                self.report(
                    "error",
                    "structure",
                    f"Slice '{element.id}': max allowed = {element.max}, but found {count} "
                    f"(from {url})",
                    location,
                    "slice-cardinality",
                )
        rules = sliced.slicing.rules
        seen_unmatched = False
        last = -1
        for item, slice_index in zip(items, assigned, strict=True):
            if slice_index is None:
                seen_unmatched = True
                if rules == "closed":
                    self.report(
                        "error",
                        "structure",
                        f"This element does not match any known slice defined in the profile "
                        f"{url} and slicing is CLOSED",
                        item.location,
                        "slice-closed",
                    )
                continue
            if rules == "openAtEnd" and seen_unmatched:
                self.report(
                    "error",
                    "structure",
                    f"Slicing of {sliced.id} is openAtEnd: this slice follows an element that "
                    "matches no slice",
                    item.location,
                    "slice-order",
                )
            if sliced.slicing.ordered and slice_index < last:
                self.report(
                    "error",
                    "structure",
                    f"As specified by profile {url}, element {sliced.id} is out of order "
                    f"(slice '{slices[slice_index].slice_name}')",
                    item.location,
                    "slice-order",
                )
            last = max(last, slice_index)
            if item.type == "Extension" and _is_defined_extension(item.value):
                continue  # checked against its own definition already
            self.item(
                slices[slice_index], item, path, parent, parent_type, scope, parent_extension_url
            )

    def _conforms(self, value: Any, type_code: str | None, url: str) -> bool:
        definition = registry().get(url)
        if definition is None:
            return False
        trial = Walk(self.options)
        if definition.kind == "resource":
            trial.resource(value, definition.type, [definition])
        else:
            scope = _invariants.Scope(value if isinstance(value, dict) else {}, {})
            trial.complex(
                value,
                definition.root,
                type_code or definition.type,
                definition.type,
                definition.type,
                scope,
            )
        return not any(issue.is_error for issue in trial.issues)

    # -- invariants ----------------------------------------------------------------------------

    def invariants(
        self,
        constraints: tuple[Any, ...],
        focus: Any,
        type_path: str,
        location: str,
        scope: _invariants.Scope,
    ) -> None:
        for constraint in constraints:
            done = (constraint.key, location)
            if done in self._invariants_done:
                continue
            self._invariants_done.add(done)
            verdict = _invariants.evaluate(constraint, focus, type_path, scope)
            if verdict.holds is None:
                if self.options.report_unevaluated:
                    self.report(
                        "information",
                        "informational",
                        f"Constraint {constraint.key} was not evaluated: {verdict.reason}",
                        location,
                        constraint.key,
                    )
            elif not verdict.holds:
                severity = "warning" if constraint.severity == "warning" else "error"
                self.report(
                    severity,
                    "invariant",
                    f"Constraint failed: {constraint.key}: '{constraint.human}'",
                    location,
                    constraint.key,
                )


def _is_defined_extension(value: Any) -> bool:
    url = value.get("url") if isinstance(value, dict) else None
    if not isinstance(url, str) or not is_absolute_uri(url):
        return False
    definition = registry().get(url.split("|", 1)[0])
    return definition is not None and definition.is_extension
