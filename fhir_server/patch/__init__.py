"""Patch documents applied to a resource's JSON (FHIR R4 http.html#patch).

``apply_json_patch`` takes an RFC 6902 JSON Patch, ``apply_fhirpath_patch`` a FHIRPath Patch
(fhirpatch.html). Both return a patched copy and raise FhirError (400 for a malformed patch,
422 for one that cannot be applied); the caller re-validates the result.
"""

from fhir_server.patch.fhirpath_patch import apply_fhirpath_patch
from fhir_server.patch.json_patch import apply_json_patch

__all__ = ["apply_fhirpath_patch", "apply_json_patch"]
