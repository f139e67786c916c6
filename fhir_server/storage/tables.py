"""Every table the server owns, on one MetaData (what migrations are compared against).

The core schema lives in ``schema``; rooms with tables of their own define them on the same
metadata in their own module, imported here.
"""

import fhir_server.auth.tables  # noqa: F401  (registers the auth tables)
import fhir_server.events.tables  # noqa: F401  (registers the outbox table)
import fhir_server.export.tables  # noqa: F401  (registers the bulk export job table)
from fhir_server.storage.schema import metadata

__all__ = ["metadata"]
