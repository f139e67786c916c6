#!/usr/bin/env bash
# What the audit trail costs ingest and reads, by where it is written: a writer process
# (SELFBACK_AUDIT_WRITER=process, the default), a thread of the server (thread), or no
# trail at all (SELFBACK_AUDIT=off). SQLite, then PostgreSQL with --postgres.
#   bash bench/audit_modes.sh [--postgres]
# Logs go to bench/results/<UTC time>-audit/. About 12 minutes per database on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
flag="${1:-}"
db=sqlite; [ "$flag" = --postgres ] && db=postgresql
OUT=bench/results/$(date -u +%Y%m%dT%H%M%SZ)-audit-$db
mkdir -p "$OUT"
echo "commit: $(git rev-parse --short HEAD), uncommitted paths: $(git status --short | wc -l)" | tee "$OUT/machine.txt"

# ingest: the same Synthea load with each mode (a fresh database each time); the process
# run keeps its database for the read runs
for mode in process off thread; do
  keep=""; [ "$mode" = process ] && keep="--keep"
  if [ "$mode" = off ]; then export SELFBACK_AUDIT=off; else export SELFBACK_AUDIT=on SELFBACK_AUDIT_WRITER=$mode; fi
  "$PY" bench/ingest.py $flag --workers 1 --clients 4 $keep --json 2>&1 | tee "$OUT/ingest-$mode.txt"
done
url=$(grep '^kept database:' "$OUT/ingest-process.txt" | awk '{print $3}')

# reads by id on that database, alternating the modes
for mode in process off thread; do
  if [ "$mode" = off ]; then export SELFBACK_AUDIT=off; else export SELFBACK_AUDIT=on SELFBACK_AUDIT_WRITER=$mode; fi
  drop=""; [ "$mode" = thread ] && drop="--drop-after"
  "$PY" bench/read_load.py --database-url "$url" $drop --workers 1,2 --duration 15 --json 2>&1 | tee "$OUT/read-$mode.txt"
done
unset SELFBACK_AUDIT SELFBACK_AUDIT_WRITER
echo "logs in $OUT"
