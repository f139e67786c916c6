#!/usr/bin/env bash
# Make sure PostgreSQL answers on 127.0.0.1:5432 (start it, or install and start it).
# The tests create their own databases; they need a superuser role "postgres" with trust
# or password-less local TCP access, which is how the Debian package is set up here.
set -euo pipefail
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
ready && exit 0
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "postgres.sh: installing PostgreSQL from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 30); do ready && break; sleep 1; done
ready || { echo "postgres.sh: PostgreSQL did not start" >&2; exit 1; }
# Let the tests connect over TCP as postgres without a password if the cluster is fresh.
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
  hba=$(ls /etc/postgresql/"$version"/main/pg_hba.conf)
  sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$version" main reload
fi
