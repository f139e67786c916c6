"""Reading this package's own data files (the only I/O in mappings)."""

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def packaged_json(folder: str, name: str) -> Any:
    """Parsed JSON of ``mappings/<folder>/<name>``; shared, callers must not change it."""
    return json.loads(
        resources.files("mappings").joinpath(folder, name).read_text(encoding="utf-8")
    )


@cache
def packaged_names(folder: str) -> tuple[str, ...]:
    entries = resources.files("mappings").joinpath(folder).iterdir()
    return tuple(sorted(e.name for e in entries if e.name.endswith(".json")))
