"""A threaded HTTP server on a free loopback port, for the stand-ins the tests put before or behind Azurine (model
servers' proxies, an image server): started with its handler class, serving on a daemon thread until `close`."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that does not log each request to stderr."""

    def log_message(self, *args: Any) -> None:
        pass


class LoopbackHttp:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def v1_url(self) -> str:
        """The base URL of an OpenAI-compatible server at this address."""
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
