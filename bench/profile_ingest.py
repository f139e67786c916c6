"""Where does ingest time go? Sample the ingest path with py-spy and sum by cost centre.

Two modes (both use Synthea bundles with fresh ids, as ingest.py does):

- default: start the real server (1 worker), attach ``py-spy record --subprocesses``, POST
  ``--bundles`` bundles with ``--clients`` concurrent clients, stop py-spy;
- ``--in-process``: run ``fhir_server.interactions.transaction.process_bundle`` in a
  loop in a child Python process under ``py-spy record`` (no HTTP at all).

Every sampled stack is put in one bucket: the outermost frame that is validation
(``validate_resource``), index extraction (``extract_index_rows``), stamping (``stamp``),
reference rewriting, SQL (SQLAlchemy / sqlite3 / psycopg, with COMMIT apart), the response
Bundle, or, when none is on the stack, JSON (the sampled line calls orjson) or the HTTP
framework (uvicorn / starlette / fastapi / anyio). Prints percentages of all non-idle
samples and the top functions by own time. Installs py-spy into the venv if missing.

    .venv/bin/python bench/profile_ingest.py
    .venv/bin/python bench/profile_ingest.py --in-process
    .venv/bin/python bench/profile_ingest.py --postgres
"""

from __future__ import annotations

import argparse
import linecache
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

HERE = Path(__file__).resolve()

# (bucket, predicate on (function, file)); the first that matches walking from the root wins.
_SPECIFIC: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    # bucket, function names, file fragments (any match)
    ("validation", ("validate_resource",), ()),
    ("index extraction", ("extract_index_rows",), ()),
    ("stamp (meta + orjson.dumps)", ("stamp",), ()),
    ("reference rewriting", ("_map_references", "_rewrite", "_bind_full_urls"), ()),
    ("response Bundle", ("_response_bundle", "bundle_bytes"), ()),
    ("parsing Bundle entries", ("parse_entry",), ()),
    ("SQL (SQLAlchemy + driver)", (), ("sqlalchemy/", "psycopg/", "sqlite3/")),
]
_FRAMEWORK = ("uvicorn/", "starlette/", "fastapi/", "anyio/", "h11/", "httptools/", "asyncio/", "concurrent/futures", "threading.py")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--in-process", action="store_true", help="profile process_bundle in a child process, no HTTP")
    parser.add_argument("--bundles", type=int, default=102, help="bundles to ingest while sampling (default 102, ~12k resources)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.bundles)
    if not 1 <= args.bundles <= 2000:
        parser.error("--bundles 1..2000")

    pyspy = ensure_pyspy()
    c.print_machine()
    db = c.fresh_database(args.postgres, "profile")
    raw = args.raw or Path(f"/tmp/selfback-pyspy-{os.getpid()}.txt")
    try:
        if args.in_process:
            cmd = [pyspy, "record", "-r", str(args.rate), "-f", "raw", "-o", str(raw), "--",
                   c.PYTHON, str(HERE), "--child", db.url, "--bundles", str(args.bundles)]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=c.ROOT)
            print(out.stdout.strip())
            if out.returncode != 0:
                print(out.stderr[-3000:])
                return 1
        else:
            profile_server(db, pyspy, raw, args)
        summarise(raw, args.top, only="_ingest_one" if args.in_process else None)
        c.print_load("after")
    finally:
        db.drop()
    return 0


def ensure_pyspy() -> str:
    exe = Path(c.PYTHON).with_name("py-spy")
    if exe.exists():
        return str(exe)
    found = shutil.which("py-spy")
    if found:
        return found
    subprocess.run([c.PYTHON, "-m", "pip", "install", "-q", "py-spy"], check=True, timeout=600)
    return str(exe)


def _bundles(n: int) -> list[tuple[bytes, int]]:
    texts = c.load_texts()
    return [(c.fresh_copy(texts[i % len(texts)][0]).encode(), texts[i % len(texts)][1]) for i in range(n)]


def profile_server(db: c.BenchDatabase, pyspy: str, raw: Path, args: argparse.Namespace) -> None:
    import ingest

    warm = _bundles(len(c.synthea_files()))
    prepared = _bundles(args.bundles)
    server = c.start_server(db, 1)
    spy = None
    try:
        # warm-up, not sampled: one copy of every bundle (lazy imports, compiled plans)
        ingest.run(server, warm, args.clients, max_seconds=280)
        spy = subprocess.Popen(
            [pyspy, "record", "--pid", str(server.process.pid), "--subprocesses", "-r", str(args.rate),
             "-f", "raw", "-o", str(raw), "--nonblocking"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        time.sleep(1.5)
        result = ingest.run(server, prepared, args.clients, max_seconds=280)
        rate = result["resources"] / result["seconds"]
        print(f"sampled while ingesting {result['resources']} resources in {result['bundles']} bundles over HTTP "
              f"({rate:,.0f} resources/s under py-spy, {result['failed']} failed; not a benchmark figure)", flush=True)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(10)
        c.stop_server(server)


def child(url: str, bundles: int) -> int:
    """Runs under py-spy: process_bundle in a loop, in this process."""
    import orjson

    from fhir_server.interactions.transaction import BundleOptions, process_bundle
    from fhir_server.storage.database import open_database
    from fhir_server.storage.migrate import upgrade
    from fhir_server.storage.repository import Repository
    from fhir_server.versioning import now_us

    db = open_database(c.sqlalchemy_url(url))
    upgrade(db)
    repo = Repository(db)

    def ingest_one(body: bytes) -> None:
        bundle = orjson.loads(body)
        process_bundle(repo, bundle, BundleOptions(base_url="http://127.0.0.1/fhir", now=now_us(), return_minimal=True))

    def warm(body: bytes) -> None:
        ingest_one(body)

    # warm-up, not summarised: one copy of every bundle (lazy imports of model classes,
    # compiled search plans), as a running server would have done long ago
    for body, _n in _bundles(len(c.synthea_files())):
        warm(body)
    prepared = _bundles(bundles)
    resources = 0
    started = time.perf_counter()
    for body, n in prepared:
        if time.perf_counter() - started > 280:
            break
        _ingest_one(ingest_one, body)
        resources += n
    seconds = time.perf_counter() - started
    print(f"in-process: {resources} resources via process_bundle in {seconds:.1f} s "
          f"({resources / seconds:,.0f} resources/s under py-spy; not a benchmark figure)")
    db.dispose()
    return 0


def _ingest_one(fn, body: bytes) -> None:  # type: ignore[no-untyped-def]
    """The frame the in-process summary keeps (warm-up and set-up are left out)."""
    fn(body)


def _frames(stack: str) -> list[tuple[str, str, int]]:
    out = []
    for part in stack.split(";"):
        part = part.strip()
        if not part.endswith(")") or " (" not in part:
            out.append((part, "", 0))
            continue
        func, _, loc = part[:-1].rpartition(" (")
        file, _, line = loc.rpartition(":")
        out.append((func, file, int(line) if line.isdigit() else 0))
    return out


def bucket(frames: list[tuple[str, str, int]]) -> str:
    for depth, (qualified, file, _) in enumerate(frames):
        func = qualified.rsplit(".", 1)[-1]  # py-spy names methods Class.method
        for name, funcs, files in _SPECIFIC:
            if (funcs and func in funcs and (not files or any(f in file for f in files))) or (
                not funcs and files and any(f in file for f in files)
            ):
                if name.startswith("SQL"):
                    # a COMMIT is reached through SQLAlchemy's context managers: look deeper
                    deeper = frames[depth:]
                    if any(fn.rsplit(".", 1)[-1] in ("commit", "_commit_impl", "do_commit") for fn, _, _ in deeper):
                        return "SQL commit"
                    return "SQL (SQLAlchemy + driver)"
                return name
    if any("repository.py" in file for _, file, _ in frames[-2:]):
        return "repository (Python around the SQL: row building, buffering)"
    if frames:
        func, file, line = frames[-1]
        if file and "orjson" in (linecache.getline(file, line) or ""):
            return "JSON (orjson loads/dumps)"
    if any(any(f in file for f in _FRAMEWORK) for _, file, _ in frames):
        return "HTTP + framework (uvicorn, starlette, fastapi, asyncio)"
    return "other"


def summarise(raw: Path, top: int, only: str | None = None) -> None:
    if not raw.exists():
        raise SystemExit(f"py-spy wrote no samples to {raw}")
    buckets: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = _frames(stack)
        if only and not any(func == only for func, _, _ in frames):
            continue
        if frames and frames[0][0].startswith(("process ", "thread ")):
            frames = [f for f in frames if f[1]]  # drop the process/thread labels
        total += n
        if not frames:
            buckets["no Python stack (native code, GC, interpreter)"] += n
            continue
        buckets[bucket(frames)] += n
        if frames:
            func, file, _ = frames[-1]
            own[f"{func} ({_short(file)})"] += n
    if not total:
        raise SystemExit("no samples")
    scope = f" inside {only}()" if only else ""
    print(f"\n{total} non-idle samples{scope}; share of samples by cost centre:")
    for name, n in buckets.most_common():
        print(f"  {n / total * 100:5.1f} %  {name}")
    print(f"\ntop {top} functions by own time (leaf frame):")
    for name, n in own.most_common(top):
        print(f"  {n / total * 100:5.1f} %  {name}")
    print(f"\ncollapsed stacks: {raw}")


def _short(file: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


if __name__ == "__main__":
    if os.environ.get("SELFBACK_BENCH_DEBUG"):
        print(sys.argv, file=sys.stderr)
    raise SystemExit(main())
