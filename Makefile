# The two commands (README): `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
HOST   ?= 127.0.0.1
AUTH   ?= smart
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# tests/browser drive Debian's chromium (.ci/chromium.sh): playwright must never fetch one.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: run test test-sqlite test-postgres browser-deps lint bench clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip 2>/dev/null || true
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

## Run the server on embedded SQLite (./data), content loaded, at http://127.0.0.1:8080/fhir
## (bearer tokens required; AUTH=none for local experiments without them, loopback only)
run: $(BIN)/.installed
	$(BIN)/selfback serve --host $(HOST) --port $(PORT) --auth $(AUTH)

## Install and run the whole suite: lint, types, then the tests on SQLite and on PostgreSQL
test: $(BIN)/.installed lint test-sqlite test-postgres

LINTED := $(wildcard fhir_server plan_engine terminology profiles mappings tests bench)

lint: $(BIN)/.installed
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy plan_engine mappings terminology profiles

## Chromium and the JS fhirclient for tests/browser (installed when missing)
browser-deps:
	bash .ci/chromium.sh

# The browser tests run here only: they carry no `db` marker, so the PostgreSQL pass skips them.
test-sqlite: $(BIN)/.installed browser-deps
	SELFBACK_TEST_DB=sqlite $(BIN)/python -m pytest -q -n 2 -p no:cacheprovider tests; \
	  rc=$$?; [ $$rc -eq 5 ] && { echo "no tests collected"; rc=0; }; exit $$rc

test-postgres: $(BIN)/.installed
	bash .ci/postgres.sh
	SELFBACK_TEST_DB=postgresql $(BIN)/python -m pytest -q -n 2 -p no:cacheprovider -m db tests; \
	  rc=$$?; [ $$rc -eq 5 ] && { echo "no tests collected"; rc=0; }; exit $$rc

clean:
	rm -rf $(VENV) data build *.egg-info tests/browser/js/node_modules
