"""CLI for the authorization server: clients, signing keys, activation codes, accounts.

Wired into ``selfback`` by :func:`register_cli`; every command prints one JSON object::

    selfback client register --name "Patient app" --type public \\
        --redirect-uri com.selfback.app:/callback --scope "launch/patient openid fhirUser \\
        offline_access patient/*.cruds"
    selfback client register --name "EHR" --type confidential-asymmetric \\
        --jwks-url https://ehr.example/jwks.json --scope "system/*.rs __ehr-launch"
    selfback client list | show ID | disable ID | enable ID | set-keys ID --jwks-file F
    selfback keys rotate | list
    selfback activation-code PATIENT_ID [--valid-hours 72] [--reenrol]
    selfback account create --role practitioner --username anna --fhir-user Practitioner/7
        (password from $SELFBACK_NEW_PASSWORD, else one line on stdin)
    selfback account list | disable ID
    selfback account totp-enrol ID|USERNAME     (prints the secret and the otpauth:// URI)
    selfback account totp-remove ID|USERNAME

Also runnable on its own: ``python -m fhir_server.auth.cli ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from fhir_server.config import Settings

Command = Callable[[argparse.Namespace, Settings], int]


def register_cli(subparsers: Any) -> None:
    """Add ``client``, ``keys``, ``activation-code`` and ``account`` to ``selfback``.

    Each parser sets ``auth_command``; the caller runs ``args.auth_command(args, settings)``
    with ``settings = Settings.from_env(database_url=args.database_url, data_dir=args.data_dir)``.
    """
    client = _group(subparsers, "client", "register and manage OAuth clients")
    register = _command(
        client,
        "register",
        "register a client (prints its client_id; a secret once)",
        _client_register,
    )
    register.add_argument("--name", required=True)
    register.add_argument(
        "--type",
        dest="client_type",
        required=True,
        choices=["public", "confidential-symmetric", "confidential-asymmetric"],
    )
    register.add_argument(
        "--scope", required=True, help="every scope the client may ever be granted"
    )
    register.add_argument("--redirect-uri", action="append", default=[], dest="redirect_uris")
    register.add_argument(
        "--grant",
        action="append",
        dest="grant_types",
        choices=["authorization_code", "refresh_token", "client_credentials"],
        help="default: authorization_code + refresh_token; client_credentials for an "
        "asymmetric client without redirect URIs",
    )
    register.add_argument("--jwks-file", type=Path, help="the client's public JWK Set (inline)")
    register.add_argument("--jwks-url", help="where the client publishes its JWK Set")
    register.add_argument("--launch-uri", help="the app's EHR launch URL")
    register.add_argument(
        "--origin", action="append", default=[], dest="origins", help="CORS origin"
    )
    register.add_argument("--client-id", help="choose the client_id (default: random)")
    _command(client, "list", "list clients", _client_list)
    for name, help_text, func in (
        ("show", "show one client", _client_show),
        ("disable", "disable a client", _client_disable),
        ("enable", "enable a client", _client_enable),
    ):
        _command(client, name, help_text, func).add_argument("client_id")
    set_keys = _command(client, "set-keys", "replace an asymmetric client's keys", _client_set_keys)
    set_keys.add_argument("client_id")
    set_keys.add_argument("--jwks-file", type=Path)
    set_keys.add_argument("--jwks-url")

    keys = _group(subparsers, "keys", "the server's token-signing keys")
    _command(
        keys,
        "rotate",
        "new signing key; old ones stay published until their tokens expire",
        _keys_rotate,
    )
    _command(keys, "list", "published signing keys", _keys_list)

    code = subparsers.add_parser("activation-code", help="create a patient's activation code")
    _common(code)
    code.add_argument("patient_id")
    code.add_argument("--valid-hours", type=int, default=14 * 24)
    code.add_argument(
        "--reenrol",
        action="store_true",
        help="the patient has an account: let this code move it to a new phone "
        "(the old phone's tokens are revoked when it does)",
    )
    code.set_defaults(auth_command=_activation_code)

    account = _group(subparsers, "account", "clinician and administrator accounts")
    create = _command(account, "create", "create a practitioner or admin account", _account_create)
    create.add_argument("--role", required=True, choices=["practitioner", "admin"])
    create.add_argument("--username", required=True)
    create.add_argument("--fhir-user", help="Practitioner/<id> (required for practitioners)")
    _command(account, "list", "list accounts", _account_list)
    _command(
        account, "disable", "disable an account and end its tokens", _account_disable
    ).add_argument("account_id")
    _command(
        account,
        "totp-enrol",
        "give a practitioner or admin a TOTP second factor (a new secret each time)",
        _account_totp_enrol,
    ).add_argument("account", help="account_id or user name")
    _command(
        account, "totp-remove", "sign in by password alone again", _account_totp_remove
    ).add_argument("account", help="account_id or user name")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", help="SQLAlchemy URL (env SELFBACK_DATABASE_URL)")
    parser.add_argument("--data-dir", type=Path, help="data folder (env SELFBACK_DATA_DIR)")
    parser.add_argument("--json", action="store_true", help="accepted for symmetry: output is JSON")


def _group(subparsers: Any, name: str, help_text: str) -> Any:
    parser = subparsers.add_parser(name, help=help_text)
    return parser.add_subparsers(dest=f"{name}_command", required=True)


def _command(group: Any, name: str, help_text: str, func: Command) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text)
    _common(parser)
    parser.set_defaults(auth_command=func)
    return parser


def _emit(payload: Any) -> None:
    print(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode(), flush=True)


def _fail(message: str) -> int:
    _emit({"error": message})
    return 2


def _open(settings: Settings) -> Any:
    from fhir_server.auth.server import AuthServices
    from fhir_server.storage.database import open_database
    from fhir_server.storage.migrate import upgrade
    from fhir_server.storage.repository import Repository

    db = open_database(settings.database_url)
    upgrade(db)
    return AuthServices.build(settings, Repository(db))


def _read_jwks(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise ValueError("the JWKS file must hold a JSON object")
    return data


# -- clients -----------------------------------------------------------------------------------


def _client_register(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_server.auth.clients import RegistrationError

    services = _open(settings)
    try:
        client, secret = services.clients.register(
            name=args.name,
            client_type=args.client_type,
            scope=args.scope,
            redirect_uris=args.redirect_uris,
            grant_types=args.grant_types,
            jwks=_read_jwks(args.jwks_file),
            jwks_uri=args.jwks_url,
            launch_uri=args.launch_uri,
            origins=args.origins,
            client_id=args.client_id,
        )
    except (RegistrationError, ValueError, OSError) as exc:
        return _fail(str(exc))
    answer = client.describe()
    if secret:
        answer["client_secret"] = secret  # shown once; only its digest is kept
    _emit(answer)
    return 0


def _client_list(args: argparse.Namespace, settings: Settings) -> int:
    _emit({"clients": [c.describe() for c in _open(settings).clients.all()]})
    return 0


def _client_show(args: argparse.Namespace, settings: Settings) -> int:
    client = _open(settings).clients.get(args.client_id)
    if client is None:
        return _fail(f"no client {args.client_id!r}")
    _emit(client.describe())
    return 0


def _client_disable(args: argparse.Namespace, settings: Settings) -> int:
    return _set_disabled(args, settings, True)


def _client_enable(args: argparse.Namespace, settings: Settings) -> int:
    return _set_disabled(args, settings, False)


def _set_disabled(args: argparse.Namespace, settings: Settings, disabled: bool) -> int:
    if not _open(settings).clients.set_disabled(args.client_id, disabled):
        return _fail(f"no client {args.client_id!r}")
    _emit({"client_id": args.client_id, "disabled": disabled})
    return 0


def _client_set_keys(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_server.auth.clients import RegistrationError

    if bool(args.jwks_file) == bool(args.jwks_url):
        return _fail("give exactly one of --jwks-file or --jwks-url")
    services = _open(settings)
    try:
        changed = services.clients.set_jwks(
            args.client_id, _read_jwks(args.jwks_file), args.jwks_url
        )
    except (RegistrationError, ValueError, OSError) as exc:
        return _fail(str(exc))
    if not changed:
        return _fail(f"no confidential-asymmetric client {args.client_id!r}")
    _emit(services.clients.get(args.client_id).describe())
    return 0


# -- signing keys ------------------------------------------------------------------------------------


def _keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    services = _open(settings)
    created, retired = services.keys.rotate()
    _emit(
        {
            "kid": created.kid,
            "retired": retired,
            "published": [k.kid for k in services.keys.published()],
        }
    )
    return 0


def _keys_list(args: argparse.Namespace, settings: Settings) -> int:
    services = _open(settings)
    services.keys.ensure()
    current = services.keys.current().kid
    _emit(
        {
            "keys": [
                {
                    "kid": k.kid,
                    "alg": "RS256",
                    "created_at": k.created_at,
                    "retired_at": k.retired_at,
                    "signing": k.kid == current,
                }
                for k in services.keys.published()
            ]
        }
    )
    return 0


# -- activation codes and accounts -------------------------------------------------------------------


def _activation_code(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from fhir_server.auth import onboarding

    if not 1 <= args.valid_hours <= 720:
        return _fail("--valid-hours must be between 1 and 720")
    services = _open(settings)
    trail = _audit_trail(settings, services)
    try:
        issued = onboarding.issue(
            services,
            None,
            args.patient_id,
            ttl=args.valid_hours * 3600,
            reenrol=args.reenrol,
            client_ip=None,
        )
    finally:
        if trail is not None:
            trail.flush()  # the CLI's steps are in the trail like the server's
    if isinstance(issued, onboarding.Refusal):
        message = issued.text.replace("(parameter reenrol = true)", "(--reenrol)")
        return _fail(message)
    _emit(
        {
            "patient": f"Patient/{args.patient_id}",
            "code": issued.code,
            "expires": datetime.fromtimestamp(issued.expires_at, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "reenrol": issued.reenrol,
            "voided": issued.voided,
        }
    )
    return 0


def _audit_trail(settings: Settings, services: Any) -> Any:
    """The audit trail, written synchronously (flush) before the command exits; None when
    the installation runs without one (SELFBACK_AUDIT=0)."""
    import socket

    from fhir_server.audit import AuditTrail, ServerIdentity

    if not settings.audit:
        return None
    trail = AuditTrail(
        services.repository, ServerIdentity(site=settings.base_url or socket.gethostname())
    )
    services.audit = trail
    return trail


def _account_create(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_server.auth.accounts import AccountError

    password = os.environ.get("SELFBACK_NEW_PASSWORD")
    if password is None:
        password = sys.stdin.readline().rstrip("\n")
    services = _open(settings)
    if args.fhir_user and not services.resource_exists(*args.fhir_user.split("/", 1)):
        return _fail(f"{args.fhir_user} is not known")
    try:
        account = services.accounts.create_staff(
            role=args.role, username=args.username, password=password, fhir_user=args.fhir_user
        )
    except (AccountError, TypeError) as exc:
        return _fail(str(exc))
    _emit(account.describe())
    return 0


def _account_list(args: argparse.Namespace, settings: Settings) -> int:
    _emit({"accounts": [a.describe() for a in _open(settings).accounts.all()]})
    return 0


def _account_disable(args: argparse.Namespace, settings: Settings) -> int:
    services = _open(settings)
    if not services.accounts.set_disabled(args.account_id, True):
        return _fail(f"no account {args.account_id!r}")
    revoked = services.tokens.revoke_subject(args.account_id)
    _emit({"account_id": args.account_id, "disabled": True, "grants_revoked": revoked})
    return 0


def _account_totp_enrol(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_server.auth import totp

    services = _open(settings)
    account = services.accounts.staff(args.account)
    if account is None:
        return _fail(f"no practitioner or admin account {args.account!r}")
    secret = services.accounts.enrol_totp(account.account_id)
    _emit(
        {
            "account_id": account.account_id,
            "username": account.username,
            "totp": True,
            # Shown once, for the clinician's authenticator app (scan the URI as a QR code
            # or type the secret); the server keeps it to compute the codes it expects.
            "secret": secret,
            "otpauth_uri": totp.provisioning_uri(secret, account.username or account.account_id),
            "algorithm": "SHA1",
            "digits": totp.DIGITS,
            "period": totp.PERIOD,
        }
    )
    return 0


def _account_totp_remove(args: argparse.Namespace, settings: Settings) -> int:
    services = _open(settings)
    account = services.accounts.staff(args.account)
    if account is None:
        return _fail(f"no practitioner or admin account {args.account!r}")
    if not services.accounts.remove_totp(account.account_id):
        return _fail(f"account {args.account!r} has no TOTP enrolled")
    _emit({"account_id": account.account_id, "username": account.username, "totp": False})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="selfback", description=__doc__.split("\n")[0])
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    settings = Settings.from_env(database_url=args.database_url, data_dir=args.data_dir)
    command: Command = args.auth_command
    return command(args, settings)


if __name__ == "__main__":
    raise SystemExit(main())
