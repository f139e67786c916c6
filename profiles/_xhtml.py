"""The rules of Narrative.div (FHIR R4 narrative.html#xhtml, invariants txt-1 and txt-2).

txt-1: the div is well-formed XHTML in the XHTML namespace, using only the basic formatting
elements of HTML 4 (no scripts, forms, frames, objects, head or body) and no event attributes.
txt-2: it has some non-whitespace content. The Java reference validator implements both as
``htmlChecks()``; so do we, here, because fhirpathpy has no such function.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

XHTML = "{http://www.w3.org/1999/xhtml}"

# narrative.html#xhtml: HTML 4.0 chapters 7-11 (except 9.4) and 12, <a>, images and tables.
ALLOWED_ELEMENTS = frozenset(
    [
        "a",
        "abbr",
        "acronym",
        "address",
        "b",
        "big",
        "blockquote",
        "br",
        "caption",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "kbd",
        "li",
        "map",
        "area",
        "ol",
        "p",
        "pre",
        "q",
        "samp",
        "small",
        "span",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "tt",
        "ul",
        "var",
        "bdo",
        "ins",
        "del",
        "s",
        "strike",
        "u",
        "font",
        "center",
    ]
)
ALLOWED_ATTRIBUTES = frozenset(
    [
        "title",
        "style",
        "class",
        "id",
        "lang",
        "xml:lang",
        "dir",
        "accesskey",
        "tabindex",
        "href",
        "name",
        "src",
        "alt",
        "colspan",
        "rowspan",
        "span",
        "width",
        "height",
        "border",
        "cellpadding",
        "cellspacing",
        "align",
        "valign",
        "summary",
        "headers",
        "scope",
        "abbr",
        "axis",
        "char",
        "charoff",
        "rules",
        "frame",
        "shape",
        "coords",
        "usemap",
        "start",
        "type",
        "value",
        "compact",
        "cite",
        "datetime",
        "nowrap",
        "bgcolor",
        "color",
        "size",
        "face",
        "clear",
        "noshade",
    ]
)
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def parse_div(text: str) -> tuple[ElementTree.Element | None, str | None]:
    """(the parsed div, None) or (None, why it is not well-formed XHTML)."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        # Covers HTML entities such as &reg; that XML does not declare.
        return None, f"The narrative is not well-formed XHTML: {error}"
    if root.tag != XHTML + "div":
        return None, "The narrative must be a single div element in the XHTML namespace"
    return root, None


def html_problems(text: str) -> list[str]:
    """What breaks txt-1 (empty when the narrative is allowed)."""
    root, problem = parse_div(text)
    if root is None:
        return [problem or "invalid narrative"]
    problems: list[str] = []
    for element in root.iter():
        tag = element.tag if isinstance(element.tag, str) else ""
        if not tag.startswith(XHTML):
            problems.append(f"Element {tag!r} is not in the XHTML namespace")
            continue
        name = tag[len(XHTML) :]
        if name not in ALLOWED_ELEMENTS:
            problems.append(f"Illegal element name in the narrative: {name!r}")
        for attribute in element.attrib:
            local = "xml:lang" if attribute == _XML_LANG else attribute
            if local.lower().startswith("on") or (
                local not in ALLOWED_ATTRIBUTES and not local.startswith("{")
            ):
                problems.append(f"Illegal attribute name in the narrative: {local!r} on {name!r}")
    return problems


def allowed_content(text: str) -> bool:
    """txt-1 for a well-formed div (a parse failure is reported on its own, not as txt-1)."""
    root, _ = parse_div(text)
    return root is None or not html_problems(text)


def has_content(text: str) -> bool:
    """txt-2: some non-whitespace text, or an image (which is content without text)."""
    root, _ = parse_div(text)
    if root is None:
        return True  # txt-1 reports the parse failure; do not report it twice
    if "".join(root.itertext()).strip():
        return True
    return any(isinstance(e.tag, str) and e.tag == XHTML + "img" for e in root.iter())


# Schemes a reader's browser can follow from a narrative link; others (urn:, cid:, ...) are
# identifiers, not locations (the HL7 validator reports them as not hyperlinkable).
HYPERLINK_SCHEMES = frozenset({"http", "https", "ftp", "mailto", "tel", "data"})
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")


def unfollowable_links(text: str) -> list[str]:
    """The href values of <a> elements whose scheme is not a hyperlink scheme."""
    root, _ = parse_div(text)
    if root is None:
        return []
    found = []
    for element in root.iter(XHTML + "a"):
        href = element.get("href")
        match = _SCHEME.match(href) if href else None
        if href and match and match.group(1).lower() not in HYPERLINK_SCHEMES:
            found.append(href)
    return found
