"""Fixtures for the scoring tests."""

import pytest
from qr_builder import build_response


@pytest.fixture
def make_response():
    return build_response
