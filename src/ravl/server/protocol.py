"""uvicorn's h11 protocol with the two timeouts uvicorn lacks: a client must deliver a complete
request head within ``header_timeout`` seconds of connecting (or of its previous response), and
must not pause for longer than ``body_timeout`` seconds while sending a body. A slow or stalled
client (slowloris) is disconnected instead of holding a connection slot forever."""
from __future__ import annotations

import asyncio
import os

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 60.0
#: environment variables carrying the timeouts to this process and to ``--workers`` processes
ENV = ("RAVL_SERVE_HEADER_TIMEOUT", "RAVL_SERVE_BODY_TIMEOUT")


def timed_protocol(header_timeout: float = HEADER_TIMEOUT, body_timeout: float = BODY_TIMEOUT) -> type:
    """The protocol class for uvicorn's ``http=`` option, with these timeouts."""
    os.environ[ENV[0]], os.environ[ENV[1]] = str(float(header_timeout)), str(float(body_timeout))
    return TimedH11Protocol


def _timeout(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
        return value if 0 < value <= 3600 else default
    except ValueError:
        return default


class TimedH11Protocol(H11Protocol):
    _ravl_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.header_timeout = _timeout(ENV[0], HEADER_TIMEOUT)
        self.body_timeout = _timeout(ENV[1], BODY_TIMEOUT)
        self._ravl_timer = None
        self._arm(self.header_timeout)

    def _arm(self, seconds: float) -> None:
        if self._ravl_timer is not None:
            self._ravl_timer.cancel()
        self._ravl_timer = self.loop.call_later(seconds, self._ravl_timeout)

    def _ravl_timeout(self) -> None:
        self._ravl_timer = None
        state = self.conn.their_state
        if state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            if state == h11.SEND_BODY and self.cycle is not None:
                self.cycle.disconnected = True  # the app's receive() now reports a disconnect
                self.cycle.message_event.set()
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state == h11.SEND_BODY:
            self._arm(self.body_timeout)  # an idle limit: every chunk restarts it
        elif state == h11.IDLE:
            if self._ravl_timer is None:
                self._arm(self.header_timeout)
        elif self._ravl_timer is not None:  # request fully received
            self._ravl_timer.cancel()
            self._ravl_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm(self.header_timeout)  # the next request head on a kept-alive connection

    def connection_lost(self, exc) -> None:
        if self._ravl_timer is not None:
            self._ravl_timer.cancel()
            self._ravl_timer = None
        super().connection_lost(exc)
