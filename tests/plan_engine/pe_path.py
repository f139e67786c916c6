"""Import first in every plan_engine test module: puts the checkout first on sys.path.

tests/conftest.py puts ``tests/`` on sys.path, where this folder would be found as a namespace
package named ``plan_engine`` before the editable install's finder runs. (A conftest.py here
would do the same job, but tests/mappings imports names ``from conftest``, and a third
conftest module would make that depend on collection order.)
"""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if not sys.path or sys.path[0] != ROOT:
    sys.path.insert(0, ROOT)
_loaded = sys.modules.get("plan_engine")
if _loaded is not None and getattr(_loaded, "__file__", None) is None:
    del sys.modules["plan_engine"]  # the namespace package picked up from tests/, not ours
