"""A real webhook receiver on a loopback port, as a deployer's would be: it checks the
HMAC signature and the timestamp (fhir_server.alerts.delivery.verify), keeps what it
accepted, and can be down (nothing listening), up, or slow (to hold a delivery in flight)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from fhir_server.alerts.delivery import DELIVERY_HEADER, verify


class Receiver:
    def __init__(self, port: int, secret: str) -> None:
        self.port = port
        self.secret = secret
        self.accepted: list[dict[str, Any]] = []
        self.deliveries: list[str] = []
        self.refused = 0
        self.hold_seconds = 0.0  # > 0: answer only after this long (a delivery in flight)
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests += 1
                if receiver.hold_seconds:
                    time.sleep(receiver.hold_seconds)
                if not verify(receiver.secret, dict(self.headers.items()), body):
                    with receiver._lock:
                        receiver.refused += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.accepted.append(orjson.loads(body))
                    receiver.deliveries.append(self.headers[DELIVERY_HEADER])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
