"""Put the checkout first on sys.path.

The editable install in .venv lists the top-level packages as namespace packages, so under
``.venv/bin/pytest`` (which does not add the working directory) ``from terminology import X``
would see a namespace package without its ``__init__``. Re-running ``pip install -e .`` or
setting pytest ``pythonpath = ["."]`` makes this unnecessary.
"""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
