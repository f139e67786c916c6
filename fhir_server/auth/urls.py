"""Where the authorization server's endpoints live, relative to the FHIR base URL."""

from __future__ import annotations


def auth_base(fhir_base: str) -> str:
    """The /auth URL beside a FHIR base URL (``https://h/x/fhir`` -> ``https://h/x/auth``)."""
    base = fhir_base.rstrip("/")
    if base.endswith("/fhir"):
        return base[: -len("/fhir")] + "/auth"
    return base + "/auth"


def same_url(a: str, b: str) -> bool:
    """D1: one canonical base URL; a trailing slash is the only difference tolerated."""
    return a.rstrip("/") == b.rstrip("/")
