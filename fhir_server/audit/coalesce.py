"""Refusals coalesced: a flood of 401s, 403s and 429s makes a handful of AuditEvents.

A client that sends 17,000 requests with a bad token in 20 seconds made 17,000 AuditEvents
of about 6.5 KB each; enough of that fills the disk. The trail still has to show the flood
(who, from where, how many, when), so refusals are counted instead of dropped:

- per (client address, HTTP status) and window of ``window`` seconds, the first ``detail``
  refusals are recorded one by one, exactly as before -- a single wrong token, or a
  clinician refused a patient, keeps its full AuditEvent;
- the rest of that window are counted, and when the window has closed one summary record
  says how many there were (``AccessRecord.count``) and over which window
  (``AccessRecord.period_us``): an AuditEvent with ``period`` and an entity whose
  ``detail`` ``coalesced-requests`` holds the count (fhir_server.audit.balp).

A closed window's summary is written by the next record that passes (any request, any
address), by a timer that looks every second, or when the trail stops. Successful requests and other outcomes pass untouched.
Memory is bounded: at most ``max_keys`` (address, status) windows are open at once; past
that, the oldest windows are closed (their summaries written) early.

This is a wrapper around the real sink (:class:`~fhir_server.audit.AuditTrail` or
:class:`~fhir_server.audit.AuditProcess`), so every place that records -- the FHIR gate,
the authorization server -- is coalesced alike.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from fhir_server.audit.records import AccessRecord

# The refusals coalesced: no valid token, refused, and refused for flooding.
COALESCED_OUTCOMES = frozenset({401, 403, 429})
_US = 1_000_000


@dataclass(slots=True)
class _Window:
    start_us: int
    end_us: int
    seen: int = 0  # refusals in this window, recorded or counted
    counted: int = 0  # of which counted only (not recorded one by one)
    last: AccessRecord | None = None  # the last counted, the summary's model
    client_ids: set[str | None] = field(default_factory=set)


class CoalescingAudit:
    """An :class:`~fhir_server.audit.records.AuditSink` that coalesces refusals (module
    docstring) before they reach ``sink``. ``clock`` gives microseconds (tests pass
    their own)."""

    def __init__(
        self,
        sink: Any,
        *,
        window: int,
        detail: int,
        max_keys: int = 50_000,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.sink = sink
        self.window_us = window * _US
        self.detail = detail
        self.max_keys = max_keys
        self._clock = clock or (lambda: time.time_ns() // 1000)
        self._lock = threading.Lock()
        self._windows: OrderedDict[tuple[str | None, int], _Window] = OrderedDict()
        self._next_due: int | None = None  # the earliest end of an open window
        self.coalesced = 0  # refusals counted into summaries so far (for the logs, tests)
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    # -- AuditSink ------------------------------------------------------------------------

    def record(self, record: AccessRecord) -> None:
        """Pass ``record`` on, count it, or both; never raises into the request."""
        try:
            summaries, passed = self._take(record)
        except Exception:  # noqa: BLE001 - the request must never fail for the audit trail
            summaries, passed = [], record
        for summary in summaries:
            self.sink.record(summary)
        if passed is not None:
            self.sink.record(passed)

    def _take(self, record: AccessRecord) -> tuple[list[AccessRecord], AccessRecord | None]:
        now = self._clock()
        with self._lock:
            summaries = self._close_due(now)
            if record.outcome not in COALESCED_OUTCOMES or record.count != 1:
                return summaries, record
            key = (record.client_ip, record.outcome)
            window = self._windows.get(key)
            if window is None:
                if len(self._windows) >= self.max_keys:
                    summaries.extend(self._close_oldest(len(self._windows) - self.max_keys + 1))
                window = self._windows[key] = _Window(now, now + self.window_us)
                if self._next_due is None or window.end_us < self._next_due:
                    self._next_due = window.end_us
            window.seen += 1
            if window.seen <= self.detail:
                return summaries, record
            window.counted += 1
            window.last = record
            window.client_ids.add(record.client_id)
            self.coalesced += 1
            return summaries, None

    def _close_due(self, now: int) -> list[AccessRecord]:
        if self._next_due is None or now < self._next_due:
            return []
        summaries: list[AccessRecord] = []
        due = [key for key, w in self._windows.items() if w.end_us <= now]
        for key in due:
            summary = self._summary(self._windows.pop(key))
            if summary is not None:
                summaries.append(summary)
        self._next_due = min((w.end_us for w in self._windows.values()), default=None)
        return summaries

    def _close_oldest(self, n: int) -> list[AccessRecord]:
        summaries = []
        for _ in range(n):
            _, window = self._windows.popitem(last=False)
            summary = self._summary(window, end_us=self._clock())
            if summary is not None:
                summaries.append(summary)
        return summaries

    def _summary(self, window: _Window, end_us: int | None = None) -> AccessRecord | None:
        last = window.last
        if last is None or not window.counted:
            return None
        end = min(window.end_us, end_us) if end_us is not None else window.end_us
        client_id = next(iter(window.client_ids)) if len(window.client_ids) == 1 else None
        return replace(
            last,
            at_us=end,
            # The last request's caller stands for all only when they were one client.
            claims=last.claims if client_id is not None else None,
            client_id=client_id,
            resource_id=None,
            version=None,
            query=None,
            entities=(),
            patient_ids=(),
            reason=(
                f"{window.counted} more requests refused with HTTP {last.outcome} from "
                f"{last.client_ip or 'an unknown address'} in this period "
                f"(the first {window.seen - window.counted} were recorded one by one); "
                f"the last: {last.reason}"
            ),
            count=window.counted,
            period_us=(window.start_us, end),
        )

    def flush_summaries(self) -> int:
        """Close every open window now and record the summaries; how many were written."""
        with self._lock:
            windows = list(self._windows.values())
            self._windows.clear()
            self._next_due = None
        now = self._clock()
        summaries = [s for w in windows if (s := self._summary(w, end_us=now)) is not None]
        for summary in summaries:
            self.sink.record(summary)
        return len(summaries)

    # -- the rest of the sink's interface ------------------------------------------------------

    def start(self) -> None:
        self.sink.start()
        self._stop.clear()
        self._timer = threading.Thread(target=self._tick, name="audit-coalesce", daemon=True)
        self._timer.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout)
            self._timer = None
        self.flush_summaries()  # what was counted is written before the trail drains
        self.sink.stop(timeout)

    def flush(self) -> int:
        self._record_due()
        return int(self.sink.flush())

    def _record_due(self) -> None:
        with self._lock:
            summaries = self._close_due(self._clock())
        for summary in summaries:
            self.sink.record(summary)

    def _tick(self) -> None:
        # A flood that stops is summarised within a second of its window's end, even
        # when no other request comes along to do it.
        while not self._stop.wait(1.0):
            try:
                self._record_due()
            except Exception:  # noqa: BLE001 - keep ticking; the trail logs its own failures
                continue

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)


__all__ = ["COALESCED_OUTCOMES", "CoalescingAudit"]
