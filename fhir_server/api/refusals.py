"""Refused requests limited per client address: past the limit, 429 with Retry-After.

Every 401 (no valid token) and 403 (refused) on /fhir counts against the address it came
from (fhir_server.client_address: the socket peer, or the client a trusted proxy names).
Once an address has had ``limit`` refusals in its current window of ``window`` seconds,
each further request of that window that would be refused is answered 429 Too Many
Requests with ``Retry-After`` (RFC 6585 section 4; RFC 9110 section 10.2.3) instead, and
an OperationOutcome with issue code ``throttled`` (R4 issue-type). Requests that are
allowed are never limited: a clinician behind the same hospital NAT as a misbehaving app
keeps working, and an app whose token expired gets its 401, refreshes, and goes on.

Windows are fixed, starting with an address's first refusal, so ``Retry-After`` is exact.
The counts are per server process and in memory: behind a load balancer each process
limits on its own (the total allowed is ``limit`` x processes), which is what bounds the
audit trail; cross-process counting is what the database-backed sign-in limits
(fhir_server.auth.rate_limits) are for. Memory is bounded by ``max_addresses``: past it
the oldest windows are forgotten first.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import FhirError, Issue

LIMITED_OUTCOMES = frozenset({401, 403})


@dataclass(slots=True)
class _Count:
    start: float
    refusals: int = 0


class RefusalLimiter:
    """Refusals per client address in fixed windows (module docstring). Thread-safe:
    requests decide on the event loop and in the thread pool."""

    def __init__(
        self,
        limit: int,
        window: int,
        *,
        max_addresses: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: OrderedDict[str | None, _Count] = OrderedDict()

    def refused(self, outcome: int, address: str | None) -> FhirError | None:
        """Count a refusal (``outcome`` 401 or 403) from ``address``; the 429 to answer
        instead when the address is past its limit, else None. Other outcomes: None."""
        if outcome not in LIMITED_OUTCOMES:
            return None
        now = self._clock()
        with self._lock:
            count = self._counts.get(address)
            if count is None or now - count.start >= self.window:
                if count is not None:
                    del self._counts[address]  # re-inserted last: the order is by start
                elif len(self._counts) >= self.max_addresses:
                    self._forget(now)
                count = self._counts[address] = _Count(now)
            count.refusals += 1
            if count.refusals <= self.limit:
                return None
            retry_after = max(1, math.ceil(count.start + self.window - now))
        return too_many(retry_after, self.limit, self.window)

    def _forget(self, now: float) -> None:
        """Room for one more address: expired windows go, then the oldest."""
        while self._counts:
            address, oldest = next(iter(self._counts.items()))
            if now - oldest.start < self.window and len(self._counts) < self.max_addresses:
                return
            del self._counts[address]


def throttled(state: Any, outcome: int, address: str | None) -> FhirError | None:
    """The 429 to answer instead of ``outcome`` for ``address`` (counting it), or None;
    None too for a server state without a limiter (tests of the rooms alone)."""
    limiter: RefusalLimiter | None = getattr(state, "refusals", None)
    return limiter.refused(outcome, address) if limiter is not None else None


def too_many(retry_after: int, limit: int, window: int) -> FhirError:
    reason = (
        f"Too many refused requests from this address ({limit} in {window} s); "
        f"try again in {retry_after} s"
    )
    return FhirError(429, [Issue("throttled", reason)], {"Retry-After": str(retry_after)})


__all__ = ["LIMITED_OUTCOMES", "RefusalLimiter", "throttled", "too_many"]
