"""The audit tests reuse the authorization tests' server, clients and accounts."""

from tests.auth.conftest import smart

__all__ = ["smart"]
