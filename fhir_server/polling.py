"""A background thread that polls for work: the outbox worker (fhir_server.events) and the
export runner (fhir_server.export) share it.

``run_once()`` does one round and says whether it found work; when it found none the
thread sleeps ``poll_seconds`` or until ``wake()``. The thread outlives any one failure
(a database restart, say): it logs and looks again rather than dying silently.
"""

from __future__ import annotations

import logging
import threading
import uuid

log = logging.getLogger("selfback")


class PollingWorker:
    def __init__(self, kind: str, poll_seconds: float) -> None:
        self.name = f"{kind}-{uuid.uuid4().hex[:12]}"
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> bool | int:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                found = self.run_once()
            except Exception:  # noqa: BLE001 - deliberately broad, see the module docstring
                log.exception("%s failed; retrying", self.name)
                found = False
            if not found:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
