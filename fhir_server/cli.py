"""The ``selfback`` command: serve, migrate, load, and the auth commands (clients, keys,
activation codes, accounts). Every command takes ``--json``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from fhir_server.config import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="selfback", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--database-url",
            help="SQLAlchemy URL (env SELFBACK_DATABASE_URL); default: SQLite under --data-dir",
        )
        p.add_argument(
            "--data-dir",
            type=Path,
            help="folder for the SQLite file and keys (env SELFBACK_DATA_DIR; default ./data)",
        )
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    serve = sub.add_parser("serve", help="run the FHIR server")
    common(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1, help="server processes")
    serve.add_argument("--base-url", help="public FHIR base URL (env SELFBACK_BASE_URL)")
    serve.add_argument(
        "--no-content", action="store_true", help="do not load the programme's content"
    )
    serve.add_argument(
        "--auth",
        choices=("smart", "none"),
        help="access control on /fhir (env SELFBACK_AUTH): smart (bearer tokens, default) or "
        "none (local experiments: loopback only, every request an admin)",
    )

    migrate = sub.add_parser("migrate", help="apply database migrations")
    common(migrate)

    load = sub.add_parser("load", help="load Bundles, NDJSON files or single resources")
    common(load)
    load.add_argument("files", nargs="+", type=Path)
    load.add_argument(
        "--batch-size", type=int, default=500, help="resources per transaction for NDJSON"
    )

    from fhir_server.auth.cli import register_cli

    register_cli(sub)

    args = parser.parse_args(argv)
    settings = Settings.from_env(database_url=args.database_url, data_dir=args.data_dir)
    if getattr(args, "auth_command", None):
        return int(args.auth_command(args, settings))
    if args.command == "serve":
        return _serve(args, settings)
    if args.command == "migrate":
        return _migrate(args, settings)
    return _load(args, settings)


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    print(orjson.dumps(payload).decode() if args.json else text, flush=True)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import os

    import uvicorn

    from fhir_server.config import LOOPBACK_HOSTS

    auth = args.auth or settings.auth
    if auth == "none" and args.host not in LOOPBACK_HOSTS:
        print(
            f"selfback serve: --auth none serves every request as an admin; it binds only "
            f"to loopback ({', '.join(sorted(LOOPBACK_HOSTS))}), not {args.host!r}",
            file=sys.stderr,
        )
        return 2
    # Worker processes build the app from the environment, so pass settings through it.
    os.environ["SELFBACK_AUTH"] = auth
    os.environ["SELFBACK_DATABASE_URL"] = settings.database_url
    os.environ["SELFBACK_DATA_DIR"] = str(settings.data_dir)
    if args.base_url:
        os.environ["SELFBACK_BASE_URL"] = args.base_url
    # Migrate and load the content once here, before the workers start, so they never
    # race on the schema or the content; the workers are then told to skip both.
    from fhir_server.content import load_programme_content
    from fhir_server.storage.database import open_database
    from fhir_server.storage.migrate import upgrade
    from fhir_server.storage.repository import Repository

    db = open_database(settings.database_url)
    revision = upgrade(db)
    content = {} if args.no_content else load_programme_content(Repository(db))
    db.dispose()
    os.environ["SELFBACK_LOAD_CONTENT"] = "0"
    url = f"http://{args.host}:{args.port}/fhir"
    database = _redact(settings.database_url)
    if auth == "none":
        print(
            "WARNING: authorization is OFF (--auth none): every request is served as an "
            "admin. For local experiments only.",
            file=sys.stderr,
            flush=True,
        )
    _emit(
        args,
        {
            "event": "serving",
            "auth": auth,
            "url": url,
            "database": database,
            "schema": revision,
            "content": content,
        },
        f"SelfBack FHIR server on {url}  (database {database}, schema {revision}, content {content or 'not loaded'})",
    )
    uvicorn.run(
        "fhir_server.asgi:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_server.storage.database import open_database
    from fhir_server.storage.migrate import upgrade

    db = open_database(settings.database_url)
    revision = upgrade(db)
    db.dispose()
    _emit(
        args,
        {"database": _redact(settings.database_url), "revision": revision},
        f"schema at {revision}",
    )
    return 0


def _load(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_server.loading import load_files

    started = time.perf_counter()
    report = load_files(settings, args.files, batch_size=args.batch_size, progress=not args.json)
    report["seconds"] = round(time.perf_counter() - started, 3)
    report["resources_per_second"] = (
        round(report["resources"] / report["seconds"], 1) if report["seconds"] else None
    )
    _emit(
        args,
        report,
        f"loaded {report['resources']} resources from {report['files']} files in {report['seconds']} s"
        + (f"; {len(report['errors'])} failed" if report["errors"] else ""),
    )
    if report["errors"] and not args.json:
        for problem in report["errors"]:
            print(f"  {problem['file']}: {problem['error']}", file=sys.stderr)
    return 1 if report["errors"] else 0


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    raise SystemExit(main())
