#!/usr/bin/env bash
# Make sure the browser tests (tests/browser) have what they drive: Debian's chromium
# (installed here when missing, as postgres.sh does for PostgreSQL) and the JS fhirclient
# pinned by tests/browser/js/package-lock.json. Playwright never downloads a browser: the
# tests launch /usr/bin/chromium through executable_path.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  echo "chromium.sh: installing chromium from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "chromium.sh: installing npm from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq npm >/dev/null
fi
js=tests/browser/js
# npm ci again only when the lockfile changed since the last install. The optional
# dependencies (React Native crypto for fhirclient's Node build) are not needed by the
# browser bundle the tests load.
if [ ! -f "$js/node_modules/.package-lock.json" ] || [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; then
  (cd "$js" && npm ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
