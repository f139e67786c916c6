"""Authorization benchmarks: the token endpoint, and what authorization costs a FHIR read.

Three parts, each against the real server on a fresh SQLite database (``--postgres`` for
PostgreSQL), with clients and accounts registered the way an installation does it
(``python -m fhir_server.auth.cli``):

1. **tokens** -- ``POST /auth/token`` from ``--clients`` concurrent clients (threads, one
   httpx client each), ``--requests`` requests per grant type:

   - ``client_credentials`` with ``private_key_jwt`` (RS384). The assertions are signed
     before the clock starts (signing is the client's cost, not the server's);
   - ``refresh_token``: one grant per client, each obtained through the real sign-in pages
     (clinician password) beforehand; every refresh rotates the refresh token, so each
     client walks its own chain.

   Prints tokens/s, p50/p99 latency and CPU core-seconds per token (server and client).

2. **overhead** -- ``wrk -t2 -c32 -d<duration>s`` on random ``GET /fhir/Observation/<id>``
   against ``selfback serve --auth smart`` with ``Authorization: Bearer`` (a backend token,
   ``system/*.rs``) and against ``--auth none`` (every request an admin, no token lookup).
   Both modes run the same access decision and the same audit trail; the difference in
   server CPU per request is what the bearer token costs. ``--audit off`` (or ``both``)
   also measures the runs with ``SELFBACK_AUDIT=off``.

3. **micro** -- in-process, per call: ``TokenStore.claims()`` (cache hit, and a miss that
   reads the database), ``decide()`` for a read by a system client and by a patient app
   (compartment check), and ``AuditTrail.record()``.

    .venv/bin/python bench/auth_bench.py                          # all three, SQLite
    .venv/bin/python bench/auth_bench.py --parts micro --micro-calls 2000
    .venv/bin/python bench/auth_bench.py --parts overhead --modes smart,none --duration 10
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
import read_load  # noqa: E402

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PASSWORD = "benchmark password 0123456789"
REDIRECT = "https://bench-app.example/cb"
PARTS = ("tokens", "overhead", "micro")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--postgres", action="store_true", help="fresh PostgreSQL database instead of SQLite"
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="comma-separated: tokens,overhead,micro (default all)",
    )
    parser.add_argument(
        "--clients", type=int, default=8, help="concurrent token clients (default 8)"
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="token requests per grant type (default 2000)"
    )
    parser.add_argument(
        "--modes",
        default="smart,none",
        help="auth modes for the overhead part (default smart,none)",
    )
    parser.add_argument(
        "--audit",
        choices=("on", "off", "both"),
        default="on",
        help="audit trail during the overhead runs (default on)",
    )
    parser.add_argument(
        "--observations",
        type=int,
        default=1000,
        help="Observations to read in the overhead part (default 1000)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds per measured wrk run (default 10)"
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="seconds of wrk warm-up before each run (default 3)"
    )
    parser.add_argument(
        "--micro-calls",
        type=int,
        default=20_000,
        help="calls per in-process measurement (default 20000)",
    )
    parser.add_argument(
        "--json", action="store_true", help="also print one JSON line per figure set"
    )
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    modes = [m for m in args.modes.split(",") if m]
    if not set(parts) <= set(PARTS) or not set(modes) <= {"smart", "none"}:
        parser.error("--parts from tokens,overhead,micro; --modes from smart,none")
    if (
        not 1 <= args.clients <= 64
        or not 1 <= args.requests <= 100_000
        or not 1 <= args.duration <= 120
    ):
        parser.error("clients 1..64, requests 1..100000, duration 1..120 s")
    if not 1 <= args.micro_calls <= 1_000_000 or not 1 <= args.observations <= 10_000:
        parser.error("micro-calls 1..1000000, observations 1..10000")

    c.print_machine()
    db = c.fresh_database(args.postgres, "auth")
    try:
        setup = register(db)
        if "tokens" in parts:
            token_bench(db, setup, args)
        if "overhead" in parts:
            overhead_bench(db, setup, modes, args)
        if "micro" in parts:
            micro_bench(db, setup, args)
    finally:
        db.drop()
    c.print_load("after")
    return 0


# -- setup ------------------------------------------------------------------------------


def auth_cli(db: c.BenchDatabase, *args: str, env: dict[str, str] | None = None) -> Any:
    result = subprocess.run(
        [
            c.PYTHON,
            "-m",
            "fhir_server.auth.cli",
            *args,
            "--database-url",
            db.url,
            "--data-dir",
            str(db.data_dir),
        ],
        capture_output=True,
        text=True,
        cwd=c.ROOT,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    if result.returncode != 0:
        raise SystemExit(f"auth cli {args[:2]} failed:\n{result.stdout}\n{result.stderr}")
    return orjson.loads(result.stdout)


def register(db: c.BenchDatabase) -> dict[str, Any]:
    """A backend client (RS384 key) and a confidential web app."""
    from joserfc.jwk import RSAKey

    subprocess.run(
        [c.SELFBACK, "migrate"],
        env={**os.environ, "SELFBACK_DATABASE_URL": db.url, "SELFBACK_DATA_DIR": str(db.data_dir)},
        cwd=c.ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    kid = uuid.uuid4().hex
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS384"}, private=True)
    jwks = db.data_dir / "backend-jwks.json"
    jwks.write_bytes(orjson.dumps({"keys": [key.as_dict(private=False)]}))
    backend = auth_cli(
        db, "client", "register", "--name", "bench backend", "--type", "confidential-asymmetric",
        "--jwks-file", str(jwks), "--scope", "system/*.cruds",
    )  # fmt: skip
    app = auth_cli(
        db, "client", "register", "--name", "bench web app", "--type", "confidential-symmetric",
        "--redirect-uri", REDIRECT, "--scope", "openid fhirUser offline_access user/*.rs",
    )  # fmt: skip
    return {
        "backend_id": backend["client_id"],
        "backend_key": key,
        "app_id": app["client_id"],
        "app_secret": app["client_secret"],
    }


def create_clinician(server: c.Server, db: c.BenchDatabase, setup: dict[str, Any]) -> None:
    """A Practitioner (over FHIR) and the clinician account that signs in as it."""
    token = backend_token(server, setup, "system/*.cruds")
    response = httpx.put(
        server.fhir + "/Practitioner/bench",
        json={"resourceType": "Practitioner", "id": "bench", "name": [{"family": "Bench"}]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    if response.status_code not in (200, 201):
        raise SystemExit(
            f"creating the Practitioner failed: {response.status_code} {response.text}"
        )
    auth_cli(
        db, "account", "create", "--role", "practitioner", "--username", "bench-clinician",
        "--fhir-user", "Practitioner/bench", env={"SELFBACK_NEW_PASSWORD": PASSWORD},
    )  # fmt: skip


def assertion(setup: dict[str, Any], token_url: str) -> str:
    from joserfc import jwt

    now = int(time.time())
    key = setup["backend_key"]
    claims = {
        "iss": setup["backend_id"],
        "sub": setup["backend_id"],
        "aud": token_url,
        "exp": now + 280,  # SMART Backend Services: at most 5 minutes ahead
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    return str(
        jwt.encode(
            {"alg": "RS384", "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=["RS384"]
        )
    )


def backend_token(server: c.Server, setup: dict[str, Any], scope: str) -> str:
    token_url = server.base + "/auth/token"
    response = httpx.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(setup, token_url),
        },
        timeout=60,
    )
    if response.status_code != 200:
        raise SystemExit(f"backend token refused: {response.status_code} {response.text}")
    return str(response.json()["access_token"])


def refresh_grant(server: c.Server, setup: dict[str, Any]) -> str:
    """Sign in on the real pages (password, consent) and exchange the code: a refresh
    token of a fresh grant."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    )
    params = {
        "response_type": "code",
        "client_id": setup["app_id"],
        "redirect_uri": REDIRECT,
        "scope": "openid fhirUser offline_access user/*.rs",
        "state": secrets.token_urlsafe(8),
        "aud": server.fhir,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    with httpx.Client(base_url=server.base, timeout=60, follow_redirects=False) as browser:
        page = browser.get("/auth/authorize?" + urlencode(params))
        flow = _hidden(page.text, "flow")
        page = browser.post(
            "/auth/authorize",
            data={
                "flow": flow,
                "username": "bench-clinician",
                "password": PASSWORD,
                "action": "password",
            },
        )
        if page.status_code != 200:
            raise SystemExit(f"sign-in failed: {page.status_code}")
        scopes = [html.unescape(s) for s in re.findall(r'name="scope" value="([^"]+)"', page.text)]
        answer = browser.post(
            "/auth/authorize",
            content=urlencode(
                [("flow", flow), *[("scope", s) for s in scopes], ("action", "approve")]
            ),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        location = answer.headers.get("location", "")
        code = parse_qs(urlsplit(location).query).get("code", [""])[0]
        if not code:
            raise SystemExit(f"no code after consent: {answer.status_code} {location}")
        tokens = browser.post(
            "/auth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
            auth=(setup["app_id"], setup["app_secret"]),
        )
    if tokens.status_code != 200 or "refresh_token" not in tokens.json():
        raise SystemExit(f"code exchange failed: {tokens.status_code} {tokens.text}")
    return str(tokens.json()["refresh_token"])


def _hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]+)"', page)
    if match is None:
        raise SystemExit(f"no hidden {name} on the page:\n{page[:1000]}")
    return html.unescape(match.group(1))


# -- 1. the token endpoint --------------------------------------------------------------


def token_bench(db: c.BenchDatabase, setup: dict[str, Any], args: argparse.Namespace) -> None:
    server = c.start_server(db, 1)
    try:
        token_url = server.base + "/auth/token"
        signed = [assertion(setup, token_url) for _ in range(args.requests)]
        forms = [
            {"grant_type": "client_credentials", "scope": "system/*.rs",
             "client_assertion_type": ASSERTION_TYPE, "client_assertion": a}
            for a in signed
        ]  # fmt: skip
        report(
            "client_credentials (private_key_jwt RS384)",
            run_token_clients(
                server,
                db,
                args.clients,
                [forms[i :: args.clients] for i in range(args.clients)],
                None,
            ),
            args,
            db,
        )
        create_clinician(server, db, setup)
        chains = [refresh_grant(server, setup) for _ in range(args.clients)]
        per_client = max(1, args.requests // args.clients)
        report(
            "refresh_token (client_secret_basic, rotated)",
            run_refresh_clients(server, db, setup, chains, per_client),
            args,
            db,
        )
    finally:
        c.stop_server(server)


def run_token_clients(
    server: c.Server, db: c.BenchDatabase, clients: int, work: list[list[dict[str, str]]], auth: Any
) -> dict[str, Any]:
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def client(forms: list[dict[str, str]]) -> None:
        mine, failed = [], 0
        with httpx.Client(timeout=60) as http:
            for form in forms:
                t0 = time.perf_counter()
                response = http.post(server.base + "/auth/token", data=form, auth=auth)
                mine.append(time.perf_counter() - t0)
                failed += response.status_code != 200
        with lock:
            latencies.extend(mine)
            failures[0] += failed

    meter = c.CpuMeter(server, db.url).start()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, work))
    cpu = meter.stop()
    return {
        "latencies": latencies,
        "failed": failures[0],
        "cpu": cpu,
        "cpu_text": meter.describe("the token clients"),
    }


def run_refresh_clients(
    server: c.Server, db: c.BenchDatabase, setup: dict[str, Any], chains: list[str], per_client: int
) -> dict[str, Any]:
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def client(refresh: str) -> None:
        mine, failed = [], 0
        with httpx.Client(timeout=60, auth=(setup["app_id"], setup["app_secret"])) as http:
            for _ in range(per_client):
                t0 = time.perf_counter()
                response = http.post(
                    server.base + "/auth/token",
                    data={"grant_type": "refresh_token", "refresh_token": refresh},
                )
                mine.append(time.perf_counter() - t0)
                if response.status_code == 200:
                    refresh = response.json()["refresh_token"]  # rotated on every use
                else:
                    failed += 1
                    break  # a broken chain cannot go on
        with lock:
            latencies.extend(mine)
            failures[0] += failed

    meter = c.CpuMeter(server, db.url).start()
    with ThreadPoolExecutor(len(chains)) as pool:
        list(pool.map(client, chains))
    cpu = meter.stop()
    return {
        "latencies": latencies,
        "failed": failures[0],
        "cpu": cpu,
        "cpu_text": meter.describe("the token clients"),
    }


def report(
    label: str, result: dict[str, Any], args: argparse.Namespace, db: c.BenchDatabase
) -> None:
    latencies = sorted(result["latencies"])
    n = len(latencies)
    wall = result["cpu"]["wall_s"] or float("nan")
    server_ms = result["cpu"]["server_cpu_s"] / max(n, 1) * 1000
    figures = {
        "benchmark": "auth-token",
        "grant": label,
        "database": db.kind,
        "clients": args.clients,
        "requests": n,
        "failed": result["failed"],
        "tokens_per_s": round(n / wall, 1),
        "p50_ms": round(latencies[n // 2] * 1000, 2) if n else None,
        "p99_ms": round(latencies[min(n - 1, int(n * 0.99))] * 1000, 2) if n else None,
        "server_cpu_ms_per_token": round(server_ms, 2),
    }
    print(
        f"token [{db.kind}, {label}, {args.clients} clients]: {figures['tokens_per_s']:,.1f} tokens/s "
        f"({n} requests in {wall} s, {result['failed']} failed), p50 {figures['p50_ms']} ms, "
        f"p99 {figures['p99_ms']} ms; server CPU {server_ms:.2f} ms per token",
        flush=True,
    )
    print("    " + result["cpu_text"], flush=True)
    if args.json:
        print(orjson.dumps(figures).decode(), flush=True)


# -- 2. per-request overhead (wrk) ------------------------------------------------------


def overhead_bench(
    db: c.BenchDatabase, setup: dict[str, Any], modes: list[str], args: argparse.Namespace
) -> None:
    wrk = read_load.ensure_wrk()
    paths = load_observations(db, setup, args.observations)
    audits = ["on", "off"] if args.audit == "both" else [args.audit]
    per_request: dict[tuple[str, str], float] = {}
    for audit in audits:
        for mode in modes:
            figures = wrk_run(db, setup, wrk, paths, mode, audit, args)
            per_request[(mode, audit)] = figures["server_cpu_us_per_request"]
            if args.json:
                print(orjson.dumps(figures).decode(), flush=True)
        if "smart" in modes and "none" in modes:
            delta = per_request[("smart", audit)] - per_request[("none", audit)]
            print(
                f"authorization overhead [audit {audit}]: {delta:+.1f} us of server CPU per read "
                f"(bearer token lookup; target < 1000 us)",
                flush=True,
            )


def load_observations(db: c.BenchDatabase, setup: dict[str, Any], count: int) -> list[str]:
    """``count`` Observations over 100 Patients, in one transaction Bundle."""
    patients = [f"urn:uuid:{uuid.uuid4()}" for _ in range(100)]
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": p,
            "resource": {"resourceType": "Patient", "active": True},
            "request": {"method": "POST", "url": "Patient"},
        }
        for p in patients
    ]
    for i in range(count):
        entries.append(
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "55423-8"}]},
                    "subject": {"reference": patients[i % len(patients)]},
                    "valueQuantity": {"value": 1000 + i, "unit": "steps"},
                },
                "request": {"method": "POST", "url": "Observation"},
            }
        )
    server = c.start_server(db, 1)
    try:
        token = backend_token(server, setup, "system/*.cruds")
        response = httpx.post(
            server.fhir,
            content=orjson.dumps(
                {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            ),
            headers={"Content-Type": "application/fhir+json", "Authorization": f"Bearer {token}"},
            timeout=300,
        )
    finally:
        c.stop_server(server)
    if response.status_code != 200:
        raise SystemExit(f"loading failed: {response.status_code} {response.text[:500]}")
    locations = [e["response"]["location"] for e in response.json()["entry"]]
    paths = [
        "/fhir/" + "/".join(loc.split("/")[:2])
        for loc in locations
        if loc.startswith("Observation/")
    ]
    print(
        f"loaded {len(patients)} Patients and {len(paths)} Observations (not a benchmark figure)",
        flush=True,
    )
    return paths


def lua_script(paths: list[str], token: str | None) -> str:
    quoted = ",\n".join(f'  "{p}"' for p in paths)
    auth = f', ["Authorization"] = "Bearer {token}"' if token else ""
    # wrk.format ignores -H headers when given a table, so the header goes in the table.
    return f"""-- generated by bench/auth_bench.py: GET a random Observation
local paths = {{
{quoted}
}}
local n = #paths
local headers = {{ ["Accept"] = "application/fhir+json"{auth} }}
function request()
  return wrk.format("GET", paths[math.random(1, n)], headers)
end
"""


def wrk_run(
    db: c.BenchDatabase,
    setup: dict[str, Any],
    wrk: str,
    paths: list[str],
    mode: str,
    audit: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    saved = {k: os.environ.get(k) for k in ("SELFBACK_AUTH", "SELFBACK_AUDIT")}
    os.environ["SELFBACK_AUTH"], os.environ["SELFBACK_AUDIT"] = mode, audit
    try:
        server = c.start_server(db, 1)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        token = backend_token(server, setup, "system/*.rs") if mode == "smart" else None
        lua = db.data_dir / f"read-{mode}.lua"
        lua.write_text(lua_script(paths, token))
        probe = httpx.get(
            server.base + paths[0],
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=10,
        )
        if probe.status_code != 200:
            raise SystemExit(
                f"[{mode}] GET {paths[0]} answered {probe.status_code}: {probe.text[:300]}"
            )
        base = [wrk, f"-t{args.threads}", f"-c{args.connections}", "--latency", "-s", str(lua)]
        if args.warmup:
            subprocess.run(
                [*base, f"-d{args.warmup}s", server.base],
                capture_output=True,
                text=True,
                timeout=args.warmup + 60,
            )
        meter = c.CpuMeter(server, db.url).start()
        out = subprocess.run(
            [*base, f"-d{args.duration}s", server.base],
            capture_output=True,
            text=True,
            timeout=args.duration + 60,
        )
        cpu = meter.stop()
        if out.returncode != 0:
            raise SystemExit(f"wrk failed: {out.stderr}")
        figures = read_load.parse_wrk(out.stdout)
        n = max(figures["requests"] or 1, 1)
        server_us = cpu["server_cpu_s"] / n * 1e6
        figures.update(
            benchmark="auth-overhead", mode=mode, audit=audit, database=db.kind,
            threads=args.threads, connections=args.connections, duration_s=args.duration,
            cpu=cpu, server_cpu_us_per_request=round(server_us, 1),
        )  # fmt: skip
        print(
            f"read [{db.kind}, --auth {mode}, audit {audit}, wrk -t{args.threads} -c{args.connections} -d{args.duration}s]: "
            f"{figures['requests_per_s']:,.1f} req/s, p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
            f"non-2xx {figures['non_2xx']}; server CPU {server_us:.1f} us per request",
            flush=True,
        )
        print("    " + meter.describe() + " (wrk is 'everything else')", flush=True)
        return figures
    finally:
        c.stop_server(server)


# -- 3. in-process microbenchmark -------------------------------------------------------


def micro_bench(db: c.BenchDatabase, setup: dict[str, Any], args: argparse.Namespace) -> None:
    from fhir_server.access.claims import PATIENT, Claims
    from fhir_server.access.decision import decide
    from fhir_server.access.scopes import parse
    from fhir_server.audit import AccessRecord, AuditTrail, ServerIdentity
    from fhir_server.auth.tokens import TokenStore
    from fhir_server.config import normalise_database_url
    from fhir_server.storage.database import open_database
    from fhir_server.storage.repository import Repository
    from fhir_server.versioning import now_us

    server = c.start_server(db, 1)
    try:
        token = backend_token(server, setup, "system/*.rs")
    finally:
        c.stop_server(server)
    database = open_database(normalise_database_url(db.url))
    try:
        store = TokenStore(database)
        if store.claims(token) is None:
            raise SystemExit("the issued token does not resolve to claims")
        n = args.micro_calls
        observation = {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "55423-8"}]},
            "subject": {"reference": "Patient/p1"},
        }
        system = store.claims(token)
        patient_app = Claims(
            client_id="app",
            scopes=parse("patient/*.rs"),
            subject="s",
            role=PATIENT,
            fhir_user="Patient/p1",
            patient="p1",
        )
        trail = AuditTrail(
            Repository(database), ServerIdentity("bench"), max_queue=n + 1000, batch_size=n + 1000
        )
        record = AccessRecord(
            "read",
            200,
            now_us(),
            claims=system,
            resource_type="Observation",
            resource_id="o1",
            version=1,
        )

        def forget_then_claims() -> object:
            store.forget_claims()
            return store.claims(token)

        clinician, fresh_grants, cross = _clinician_case()
        grants_now = fresh_grants()
        # the figures are of the right answers: p1's data allowed, p1+p2's refused
        assert (
            type(decide(clinician, "read", "Observation", observation, consent=grants_now)).__name__
            == "Allow"
        )
        assert (
            type(decide(clinician, "read", "Observation", cross, consent=grants_now)).__name__
            == "Deny"
        )
        from fhir_server.access.decision import decide_launch
        from fhir_server.access.lookups import lookup_consents
        from fhir_server.config import Settings

        settings = Settings.from_env()
        repository = Repository(database)

        results = {
            "claims() cache hit": per_call(lambda: store.claims(token), n),
            "claims() cache miss (database)": per_call(forget_then_claims, max(1, n // 10)),
            "decide(read) system/*.rs": per_call(
                lambda: decide(system, "read", "Observation", observation), n
            ),  # type: ignore[arg-type]
            "decide(read) patient/*.rs (compartment)": per_call(
                lambda: decide(patient_app, "read", "Observation", observation), n
            ),
            "decide(read) practitioner user/*.rs (Consent + CareTeam)": per_call(
                lambda: decide(clinician, "read", "Observation", observation, consent=grants_now),
                n,
            ),
            "decide(read) practitioner, Observation in 2 compartments": per_call(
                lambda: decide(clinician, "read", "Observation", cross, consent=grants_now), n
            ),
            # a fresh ConsentGrants per call, as per request (its per-type cache cold)
            "grants() + decide(search-type) practitioner user/*.rs (Filter)": per_call(
                lambda: decide(clinician, "search-type", "Observation", [], consent=fresh_grants()),
                n,
            ),
            "decide_launch() practitioner (authorize step)": per_call(
                lambda: decide_launch("practitioner", "Practitioner/d1", "p1", grants_now), n
            ),
            "lookup_consents() (database, once per practitioner request)": per_call(
                lambda: lookup_consents(repository, settings, "Practitioner/d1"),
                max(1, n // 10),
            ),
            "AuditTrail.record()": per_call(lambda: trail.record(record), n),
            "AuditTrail write (batches of 500), per AuditEvent": write_cost(
                Repository(database), record, min(n, 5000)
            ),
        }
    finally:
        database.dispose()
    for label, us in results.items():
        print(f"micro [{db.kind}]: {label}: {us:.2f} us per call", flush=True)
    typical = (
        results["claims() cache hit"]
        + results["decide(read) patient/*.rs (compartment)"]
        + results["AuditTrail.record()"]
    )
    print(
        f"micro [{db.kind}]: a patient app's read (claims hit + decide + record): {typical:.2f} us",
        flush=True,
    )
    if args.json:
        print(
            orjson.dumps(
                {"benchmark": "auth-micro", "database": db.kind, "us_per_call": results}
            ).decode(),
            flush=True,
        )


def _clinician_case() -> tuple[Any, Any, dict[str, Any]]:  # noqa: D401
    """A practitioner token (user/*.rs), the ConsentGrants a request of theirs is decided
    on (an active permit from p1, a CareTeam link to p1), and an Observation in p1's and
    p2's compartments (subject p1, performer p2: refused, p2 has not consented)."""
    from fhir_server.access.claims import PRACTITIONER, Claims
    from fhir_server.access.consent import grants
    from fhir_server.access.scopes import parse
    from fhir_server.versioning import now_us

    user = "Practitioner/d1"
    clinician = Claims(
        client_id="app",
        scopes=parse("user/*.rs"),
        subject="s",
        role=PRACTITIONER,
        fhir_user=user,
    )
    consent = {
        "resourceType": "Consent",
        "id": "c1",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "dateTime": "2026-01-01T00:00:00Z",
        "provision": {"type": "permit", "actor": [{"reference": {"reference": user}}]},
    }

    def fresh_grants() -> Any:
        return grants(user, [consent], [user], now_us(), linked=["p1"])

    cross = {
        "resourceType": "Observation",
        "id": "o2",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "55423-8"}]},
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "Patient/p2"}],
    }
    return clinician, fresh_grants, cross


def write_cost(repository: Any, record: Any, n: int) -> float:
    """CPU time of the trail's writer per AuditEvent: build, index, insert, commit."""
    from fhir_server.audit import AuditTrail, ServerIdentity

    trail = AuditTrail(repository, ServerIdentity("bench"), max_queue=n, batch_size=500)
    for _ in range(n):
        trail.record(record)
    started = time.process_time()
    written = trail.flush()
    if written != n:
        raise SystemExit(f"the trail wrote {written} of {n} AuditEvents")
    return (time.process_time() - started) / n * 1e6


def per_call(fn: Any, n: int) -> float:
    for _ in range(min(n, 200)):  # warm caches and the interpreter
        fn()
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


if __name__ == "__main__":
    raise SystemExit(main())
