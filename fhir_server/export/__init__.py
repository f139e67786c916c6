"""Bulk Data export (``$export``), the Bulk Data Access IG 2.0
(https://hl7.org/fhir/uv/bulkdata/STU2/export.html); docs/BULK_EXPORT.md.

- ``kickoff``: the kick-off request's headers and parameters, checked (pure);
- ``plan``: which types a job reads, under which access decision (pure);
- ``selection``: one type's resources, page by page (storage);
- ``jobs`` and ``tables``: the job rows (storage);
- ``runner``: the worker thread that writes the NDJSON files;
- ``manifest``: the status URL, file URLs and the completion manifest (pure);
- ``routes``: the HTTP side (kick-off, status, cancel, files).

What the CapabilityStatement says about it is here, so it needs nothing else.
"""

BULK_DATA_CAPABILITY = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
# The IG's OperationDefinitions, by where the operation is invoked (BDS-10, INF-K1).
EXPORT_DEFINITIONS = {
    "system": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    "Patient": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
    "Group": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
}
