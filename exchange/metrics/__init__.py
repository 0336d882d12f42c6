"""Prometheus metrics: every long-running process serves ``/metrics``.

Names carry their unit (``_seconds``, ``_records``, ``_total``); labels stay bounded (department,
entry, connector, consumer, grant, reason), never a key or an offset.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server


class MetricsServer:
    """``/metrics`` on a port of its own, in a background thread.

    ``registry``: what to serve; the default is the process's global one (metrics defined at
    module level, and the process's CPU and memory).
    """

    def __init__(
        self, port: int, host: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY
    ) -> None:
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port = int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
