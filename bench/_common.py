"""Shared helpers for the benchmarks: the machine, the data, the server, the databases.

Nothing here is timed; the scripts time their own phases with ``time.perf_counter``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = Path(os.environ.get("SELFBACK_BENCH_SYNTHEA", ROOT.parent / "shared" / "synthea-r4"))
POSTGRES_ADMIN = os.environ.get(
    "SELFBACK_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PYTHON = sys.executable
SELFBACK = str(Path(PYTHON).with_name("selfback"))

_URN_UUID = re.compile(r"urn:uuid:([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})")


# -- machine ----------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
                break
    except OSError:
        pass
    pg = "?"
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN, connect_timeout=3) as conn:
            pg = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    except Exception as exc:  # noqa: BLE001 - just a label
        pg = f"unavailable ({type(exc).__name__})"
    return {
        "fsync_p50_ms": fsync_probe(),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg,
    }


def fsync_probe(count: int = 50) -> str:
    """Median time of write(4 KiB) + fsync in the temp folder (where the SQLite files go)."""
    times = []
    with tempfile.NamedTemporaryFile(prefix="selfback-bench-fsync-") as f:
        for _ in range(count):
            t0 = time.perf_counter()
            f.write(b"x" * 4096)
            f.flush()
            os.fsync(f.fileno())
            times.append(time.perf_counter() - t0)
    times.sort()
    return f"{times[len(times) // 2] * 1000:.2f}"


def loadavg() -> str:
    one, five, _ = os.getloadavg()
    return f"loadavg 1m {one:.2f} 5m {five:.2f}"


def print_load(when: str) -> None:
    """The machine is shared: say how busy it was (other processes steal our 2 cores)."""
    print(f"{loadavg()} ({when})", flush=True)


def print_machine() -> dict[str, str]:
    info = machine()
    print_load("before")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    return info


# -- CPU accounting (the machine is shared, so wall-clock rates alone can mislead) -----

_TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """Core-seconds all CPUs have spent busy since boot (user+nice+system+irq+softirq+steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def pid_cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def postgres_backends(url: str) -> list[int]:
    """Backend pids serving ``url``'s database (our own bench_* database only)."""
    if not url.startswith("postgres"):
        return []
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
        ).fetchall()
    return [int(r[0]) for r in rows]


@dataclass
class CpuMeter:
    """CPU used between start() and stop(): by the server's processes, by PostgreSQL
    backends of our database, by this client process, and by the whole machine."""

    server: Server | None = None
    database_url: str = ""
    _start: dict[str, object] = field(default_factory=dict)
    result: dict[str, float] = field(default_factory=dict)

    def _server_cpu(self) -> dict[int, float]:
        return {pid: pid_cpu_seconds(pid) for pid in self.server.pids()} if self.server else {}

    def _pg_cpu(self) -> dict[int, float]:
        return {pid: pid_cpu_seconds(pid) for pid in postgres_backends(self.database_url)}

    def start(self) -> CpuMeter:
        self._start = {
            "server": self._server_cpu(),
            "pg": self._pg_cpu(),
            "client": time.process_time(),
            "machine": machine_busy_seconds(),
            "wall": time.perf_counter(),
        }
        return self

    def stop(self) -> dict[str, float]:
        def delta(now: dict[int, float], before: object) -> float:
            assert isinstance(before, dict)
            return sum(v - before.get(pid, 0.0) for pid, v in now.items())

        wall = time.perf_counter() - float(self._start["wall"])  # type: ignore[arg-type]
        self.result = {
            "wall_s": round(wall, 2),
            "server_cpu_s": round(delta(self._server_cpu(), self._start["server"]), 2),
            "postgres_cpu_s": round(delta(self._pg_cpu(), self._start["pg"]), 2),
            "client_cpu_s": round(time.process_time() - float(self._start["client"]), 2),  # type: ignore[arg-type]
            "machine_busy_s": round(machine_busy_seconds() - float(self._start["machine"]), 2),  # type: ignore[arg-type]
            "machine_capacity_s": round(wall * (os.cpu_count() or 1), 2),
        }
        return self.result

    def describe(self, client: str = "this client") -> str:
        r = self.result
        others = r["machine_busy_s"] - r["server_cpu_s"] - r["postgres_cpu_s"] - r["client_cpu_s"]
        parts = []
        if self.server is not None:
            parts.append(f"server {r['server_cpu_s']:.2f}")
        if self.database_url.startswith("postgres"):
            parts.append(f"PostgreSQL backends {r['postgres_cpu_s']:.2f}")
        parts.append(f"{client} {r['client_cpu_s']:.2f}")
        parts.append(f"everything else {others:.2f}")
        return (
            f"CPU core-seconds over {r['wall_s']} s: " + ", ".join(parts)
            + f" (machine busy {r['machine_busy_s']:.2f} of {r['machine_capacity_s']:.2f})"
        )


# -- data -------------------------------------------------------------------------------


def synthea_files() -> list[Path]:
    files = sorted(p for p in SYNTHEA.glob("*.json") if p.name != "index.json")
    if not files:
        raise SystemExit(f"no Synthea bundles in {SYNTHEA}")
    return files


def load_texts() -> list[tuple[str, int]]:
    """(bundle text, number of entries) for every Synthea bundle."""
    import orjson

    out = []
    for path in synthea_files():
        text = path.read_text()
        out.append((text, len(orjson.loads(text).get("entry") or [])))
    return out


def fresh_copy(text: str) -> str:
    """The bundle with every ``urn:uuid:<uuid>`` replaced by a new uuid, consistently
    (the same old uuid maps to the same new one within this copy)."""
    mapping: dict[str, str] = {}

    def sub(match: re.Match[str]) -> str:
        old = match.group(1).lower()
        new = mapping.get(old)
        if new is None:
            new = mapping[old] = str(uuid.uuid4())
        return "urn:uuid:" + new

    return _URN_UUID.sub(sub, text)


def replicated(min_resources: int) -> tuple[int, Iterator[tuple[str, int]]]:
    """(copies, iterator of (bundle text with fresh ids, entries)) reaching at least
    ``min_resources`` resources; copies are made lazily, one bundle at a time."""
    texts = load_texts()
    per_copy = sum(n for _, n in texts)
    copies = max(1, -(-min_resources // per_copy))

    def gen() -> Iterator[tuple[str, int]]:
        for _ in range(copies):
            for text, n in texts:
                yield fresh_copy(text), n

    return copies, gen()


# -- databases --------------------------------------------------------------------------


@dataclass
class BenchDatabase:
    url: str
    kind: str
    data_dir: Path
    _pg_name: str | None = None
    keep: bool = False
    sqlite_folder: Path | None = None  # a kept SQLite folder to remove on drop
    reuse_dir: bool = False  # data_dir is a scratch folder made for a reused database

    def drop(self) -> None:
        if self.keep:
            if self.reuse_dir:  # our own scratch folder beside a reused database
                shutil.rmtree(self.data_dir, ignore_errors=True)
            return
        if self.sqlite_folder is not None:
            shutil.rmtree(self.sqlite_folder, ignore_errors=True)
        if self._pg_name:
            import psycopg

            with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)')
        shutil.rmtree(self.data_dir, ignore_errors=True)


def fresh_database(postgres: bool, label: str, keep: bool = False) -> BenchDatabase:
    data_dir = Path(tempfile.mkdtemp(prefix=f"selfback-bench-{label}-"))
    if not postgres:
        return BenchDatabase(f"sqlite:///{data_dir / 'selfback.sqlite'}", "sqlite", data_dir, keep=keep)
    import psycopg

    name = f"bench_{label}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN.rsplit("/", 1)[0]
    return BenchDatabase(f"{base}/{name}", "postgresql", data_dir, name, keep=keep)


def existing_database(url: str, drop_after: bool = False) -> BenchDatabase:
    """A database made earlier (``ingest.py --keep``). With ``drop_after`` it is dropped
    at the end, but only if it is one of ours (``bench_*`` database or a
    ``selfback-bench-*`` folder)."""
    data_dir = Path(tempfile.mkdtemp(prefix="selfback-bench-reuse-"))
    kind = "sqlite" if url.startswith("sqlite") else "postgresql"
    db = BenchDatabase(url, kind, data_dir, keep=True, reuse_dir=True)
    if drop_after:
        if kind == "postgresql":
            name = url.rsplit("/", 1)[1]
            if name.startswith("bench_"):
                db._pg_name, db.keep = name, False
                # and the folder ingest.py --keep left beside it (server log, secret key)
                for folder in Path(tempfile.gettempdir()).glob("selfback-bench-ingest-*"):
                    marker = folder / "database.txt"
                    if marker.exists() and marker.read_text().rstrip().endswith("/" + name):
                        db.sqlite_folder = folder
        else:
            folder = Path(url.split(":///", 1)[1]).parent
            if folder.name.startswith("selfback-bench-"):
                db.sqlite_folder, db.keep = folder, False
    return db


def sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# -- server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    samples: dict[int, int] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fhir(self) -> str:
        return self.base + "/fhir"

    def pids(self) -> list[int]:
        """The server process and all its descendants."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
        out, todo = [], [self.process.pid]
        while todo and len(out) < 1000:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def worker_count(self) -> int:
        """uvicorn's worker processes (multiprocessing spawn children)."""
        count = 0
        for pid in self.pids():
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    count += 1
            except OSError:
                continue
        return count

    def sample_rss(self) -> int:
        """Record VmHWM (peak RSS, kB) of every server process seen so far; return the
        sum of peaks over all processes ever seen (a worker that exited keeps its last
        reading)."""
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.samples[pid] = max(self.samples.get(pid, 0), int(line.split()[1]))
            except OSError:
                continue
        return sum(self.samples.values())

    def peak_rss_mb(self) -> float:
        return round(self.sample_rss() / 1024, 1)


def start_server(db: BenchDatabase, workers: int, *, timeout: float = 120) -> Server:
    """``selfback serve --workers N`` on 127.0.0.1 against ``db``; migrations run once
    before the workers start. Programme content is not loaded (SELFBACK_LOAD_CONTENT=0)."""
    port = free_port()
    log = db.data_dir / f"server-{port}.log"
    env = {
        **os.environ,
        "SELFBACK_DATABASE_URL": db.url,
        "SELFBACK_DATA_DIR": str(db.data_dir),
        "SELFBACK_LOAD_CONTENT": "0",
        # The data-path benchmarks measure the FHIR API without tokens (--auth none, loopback
        # only); auth_bench.py sets SELFBACK_AUTH itself to compare both modes.
        "SELFBACK_AUTH": os.environ.get("SELFBACK_AUTH", "none"),
        # the documented default (64 MiB), set explicitly: early versions of config.py
        # could not read their own default (fixed since), and the figures should not depend on it
        "SELFBACK_MAX_BODY_BYTES": os.environ.get("SELFBACK_MAX_BODY_BYTES", str(64 * 1024 * 1024)),
    }
    cmd = [SELFBACK, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--no-content"]
    process = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(server.base + "/healthz", timeout=2).status_code == 200:
                if workers > 1:
                    _wait_workers(server, workers, deadline)
                server.sample_rss()
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"server did not answer /healthz in {timeout} s:\n{log.read_text()[-4000:]}")


def _wait_workers(server: Server, workers: int, deadline: float) -> None:
    """With several workers, wait until each has answered once (they start one by one)."""
    end = min(deadline, time.monotonic() + 60)
    with httpx.Client(timeout=2) as client:
        for _ in range(2000):
            if time.monotonic() > end:
                break
            # a fresh connection each time, so the kernel may hand it to any worker
            with contextlib.suppress(httpx.HTTPError):
                client.get(server.base + "/healthz", headers={"Connection": "close"})
            if server.worker_count() >= workers:
                time.sleep(3.0)  # let the last worker finish importing the app
                return
            time.sleep(0.1)


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(10)


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"
