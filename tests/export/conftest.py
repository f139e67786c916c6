"""One real server with SMART auth for the bulk export tests, its backend clients made
with the ``selfback`` CLI and its data written over HTTP, as an installation does."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from tests.auth.conftest import GENEROUS, SmartEnv, register_patient_app
from tests.auth.smart_app import BackendKey
from tests.conftest import drop_database, fresh_database_url, start_server, stop_server
from tests.export.bulk_client import BACKENDS


@pytest.fixture(scope="session")
def bulk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmartEnv]:
    data_dir = tmp_path_factory.mktemp("bulk-export")
    database_url = fresh_database_url(data_dir, "bulk")
    env = SmartEnv(start_server(database_url, data_dir, **GENEROUS), database_url, data_dir)
    try:
        for name, scope in BACKENDS.items():
            key = BackendKey.rs384()
            jwks = data_dir / f"{name}-jwks.json"
            jwks.write_bytes(orjson.dumps({"keys": [key.public()]}))
            registered = env.cli(
                "client",
                "register",
                "--name",
                f"bulk test {name}",
                "--type",
                "confidential-asymmetric",
                "--jwks-file",
                str(jwks),
                "--scope",
                scope,
            )
            env.backends[name] = (registered["client_id"], key)
        register_patient_app(env)
        yield env
    finally:
        stop_server(env.server)  # the restart test may have replaced the first server
        drop_database(database_url)
