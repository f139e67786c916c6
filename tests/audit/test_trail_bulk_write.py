"""The repository's bulk path the audit trail's batches take: on PostgreSQL, from
``_COPY_MIN_ROWS`` buffered rows of a table on, new resources, history and index rows go
in by COPY instead of executemany. What is stored must be what executemany stores (SQLite
runs the same tests through executemany), and a conflict must still be a conflict.
Runs against a real database (SQLite, or PostgreSQL with SELFBACK_TEST_DB=postgresql)."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from fhir_server.errors import FhirError
from fhir_server.interactions.write import write_version
from fhir_server.search import extract_index_rows
from fhir_server.storage.repository import _COPY_MIN_ROWS, Repository, WriteSession
from fhir_server.storage.schema import INDEX_TABLES, resource, resource_history
from fhir_server.versioning import now_us

COUNT = _COPY_MIN_ROWS + 36  # more new resources than the COPY threshold


def awkward(n: int) -> dict[str, object]:
    """Values COPY's text format must escape: tabs, newlines, backslashes, \\N, quotes,
    non-ASCII, empty-looking strings, numbers and decimals."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": f"8867-{n}", "display": "Hé\tart"}],
            "text": "line one\nline two \\N and a \\ backslash, \"quoted\" 'single'",
        },
        "subject": {"reference": f"Patient/p{n % 7}"},
        "effectiveDateTime": "2026-01-01T10:00:00.5+02:00",
        "valueQuantity": {
            "value": 60.25 + n,
            "unit": "mg",
            "system": "http://unitsofmeasure.org",
            "code": "mg",
        },
        "note": [{"text": "\x01 control and emoji \U0001f600 and \r carriage"}],
    }


def test_many_new_resources_are_stored_exactly(repository: Repository) -> None:
    ids = [f"bulk-{n}" for n in range(COUNT)]
    now = now_us()

    def work(session: WriteSession) -> list[int]:
        for n, id in enumerate(ids):
            write_version(session, awkward(n), id=id, now=now, method="POST", previous=None)
        session.flush()
        return [r.pk for r in session.resources_by_pk(list(range(1, 10 * COUNT)))]

    pks = repository.write(work)
    assert len(pks) == COUNT
    with repository.db.reader.connect() as conn:
        current = conn.execute(
            select(
                resource.c.pk,
                resource.c.id,
                resource.c.version,
                resource.c.deleted,
                resource.c.last_updated,
                resource.c.body,
            ).order_by(resource.c.pk)
        ).all()
        history = conn.execute(
            select(
                resource_history.c.res_pk,
                resource_history.c.id,
                resource_history.c.method,
                resource_history.c.body,
            )
        ).all()
        stored_rows = {
            name: conn.execute(
                select(*[c for c in table.columns if c.name not in ("rtype",)])
            ).all()
            for name, table in INDEX_TABLES.items()
        }
    # pks ascend in the order the resources were written
    assert [row.id for row in current] == ids
    assert all(row.version == 1 and not row.deleted and row.last_updated == now for row in current)
    by_pk = {row.pk: row for row in current}
    assert {(row.res_pk, row.id, row.method) for row in history} == {
        (row.pk, row.id, "POST") for row in current
    }
    for row in current:
        body = orjson.loads(bytes(row.body))
        n = int(row.id.split("-")[1])
        assert {k: v for k, v in body.items() if k not in ("id", "meta")} == awkward(n)
    for row in history:
        assert bytes(row.body) == bytes(by_pk[row.res_pk].body)
    # every index row, value for value, as extraction made it
    for name, table in INDEX_TABLES.items():
        columns = [c.name for c in table.columns if c.name not in ("res_pk", "rtype")]
        expected_rows = sorted(
            (
                (row.pk, *[found.get(c) for c in columns])
                for row in current
                for found in extract_index_rows(orjson.loads(bytes(row.body)))[name]
            ),
            key=repr,
        )
        assert sorted((tuple(r) for r in stored_rows[name]), key=repr) == expected_rows, name


def test_a_conflict_in_a_bulk_write_is_still_a_conflict(repository: Repository) -> None:
    """A duplicate (type, id) among many new resources: nothing is written, and the client
    is told to retry (409), as for executemany."""
    now = now_us()

    def work(session: WriteSession) -> None:
        for n in range(COUNT):
            write_version(
                session,
                awkward(n),
                id=f"dup-{n % (COUNT - 1)}",
                now=now,
                method="POST",
                previous=None,
            )

    with pytest.raises((FhirError, IntegrityError)) as raised:
        repository.write(work)
    if repository.db.writer.dialect.name == "postgresql":
        # retried, then answered as a conflict the client may retry
        assert isinstance(raised.value, FhirError) and raised.value.status == 409
    with repository.db.reader.connect() as conn:
        assert conn.execute(select(resource.c.pk)).first() is None
        assert conn.execute(select(resource_history.c.hpk)).first() is None


def test_a_bulk_write_after_a_single_one_keeps_pks_unique_and_ascending(
    repository: Repository,
) -> None:
    """Single writes take pks from the column's default, bulk ones from the same sequence."""
    now = now_us()

    def one(session: WriteSession) -> None:
        write_version(session, awkward(0), id="single", now=now, method="POST", previous=None)

    def many(session: WriteSession) -> None:
        for n in range(COUNT):
            write_version(session, awkward(n), id=f"m-{n}", now=now, method="POST", previous=None)

    repository.write(one)
    repository.write(many)
    repository.write(
        lambda s: write_version(s, awkward(1), id="single-2", now=now, method="POST", previous=None)
    )
    with repository.db.reader.connect() as conn:
        rows = conn.execute(select(resource.c.pk, resource.c.id).order_by(resource.c.pk)).all()
    assert [r.id for r in rows] == ["single", *[f"m-{n}" for n in range(COUNT)], "single-2"]
    assert len({r.pk for r in rows}) == len(rows)
