"""Admission and flow limits of the gateway (seed 003).

Connection counts are per process, as in seed 003's server: MAX_TOTAL_CONNECTIONS and
MAX_CONNS_PER_IP bound what one process holds; the load balancer spreads clients over processes.
"""

from __future__ import annotations

import collections
import threading
import time

from django.conf import settings


class ConnectionCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self.per_ip: collections.Counter[str] = collections.Counter()

    def admit(self, ip: str | None) -> str | None:
        """Take a slot, or return the rejection reason."""
        with self._lock:
            if self.total >= settings.MAX_TOTAL_CONNECTIONS:
                return "total_limit"
            if ip and self.per_ip[ip] >= settings.MAX_CONNS_PER_IP:
                return "ip_limit"
            self.total += 1
            if ip:
                self.per_ip[ip] += 1
            return None

    def release(self, ip: str | None) -> None:
        with self._lock:
            self.total = max(0, self.total - 1)
            if ip:
                self.per_ip[ip] -= 1
                if self.per_ip[ip] <= 0:
                    del self.per_ip[ip]


connections = ConnectionCounter()


class InboundWindow:
    """Messages and bytes a connection sent in the last 10 seconds (MAX_MSGS/BYTES_PER_10S)."""

    WINDOW_S = 10.0

    def __init__(self) -> None:
        self._events: collections.deque[tuple[float, int]] = collections.deque()
        self._bytes = 0

    def add(self, size: int) -> str | None:
        """Record one frame; return the violated limit's name, if any."""
        now = time.monotonic()
        while self._events and self._events[0][0] <= now - self.WINDOW_S:
            _, old = self._events.popleft()
            self._bytes -= old
        self._events.append((now, size))
        self._bytes += size
        if len(self._events) > settings.MAX_MSGS_PER_10S:
            return "msg_rate"
        if self._bytes > settings.MAX_BYTES_PER_10S:
            return "byte_rate"
        return None
