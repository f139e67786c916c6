"""The SelfBack FHIR server: HTTP API, storage, search, auth, events and CLI (all the I/O)."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
