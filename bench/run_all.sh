#!/usr/bin/env bash
# Every benchmark on SQLite and PostgreSQL, the way docs/BENCHMARKS.md was produced.
# Logs go to bench/results/<UTC time>/. Each step is bounded (see the scripts' --max-seconds
# and wrk -d); the whole run takes about 20 minutes on 2 cores.
set -uo pipefail  # no -e: a failing step is logged and the rest still run
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=bench/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

{
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo '?'), uncommitted paths: $(git status --short 2>/dev/null | wc -l)"
  echo "nproc: $(nproc)"; grep -m1 'model name' /proc/cpuinfo; grep MemTotal /proc/meminfo
  "$PY" -c 'import sqlite3; print("SQLite", sqlite3.sqlite_version)'
  psql -h 127.0.0.1 -U postgres -Atc 'select version()' 2>/dev/null || echo "PostgreSQL: psql unavailable"
} | tee "$OUT/machine.txt"

for db in sqlite postgresql; do
  flag=""; [ "$db" = postgresql ] && flag="--postgres"
  "$PY" bench/ingest.py $flag --workers 1 --clients 4 --keep --json 2>&1 | tee "$OUT/ingest-$db-w1.txt"
  url=$(grep '^kept database:' "$OUT/ingest-$db-w1.txt" | awk '{print $3}')
  rate=$(grep '^{' "$OUT/ingest-$db-w1.txt" | tail -n 1 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["resources_per_s"])')
  "$PY" bench/ingest.py $flag --workers 2 --clients 4 --json 2>&1 | tee "$OUT/ingest-$db-w2.txt"
  "$PY" bench/read_load.py --database-url "$url" --drop-after --workers 1,2 --json 2>&1 | tee "$OUT/read-$db.txt"
  "$PY" bench/storage_limit.py $flag --server-rate "$rate" --json 2>&1 | tee "$OUT/limit-$db.txt"
done

# experiment: SQLite with no WAL auto-checkpoint on the write path (upper bound for a
# background checkpointer)
"$PY" bench/storage_limit.py --wal-autocheckpoint 0 2>&1 | tee "$OUT/limit-sqlite-no-autocheckpoint.txt"

"$PY" bench/profile_ingest.py 2>&1 | tee "$OUT/profile-http-sqlite.txt"
"$PY" bench/profile_ingest.py --in-process 2>&1 | tee "$OUT/profile-inprocess-sqlite.txt"
"$PY" bench/profile_ingest.py --postgres 2>&1 | tee "$OUT/profile-http-postgresql.txt"
echo "logs in $OUT"
