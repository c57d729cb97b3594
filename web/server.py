"""The dashboard served by waitress (a production WSGI server) in a background thread, so
that `radassist serve` runs it beside the DICOM node and the worker."""

from __future__ import annotations

import contextlib
import logging
import threading

from assistant.db import Database
from assistant.intake.stow import StowIntake
from assistant.settings import Settings
from web import create_app
from web.http_limits import create_bounded_server

LOGGER = logging.getLogger(__name__)

#: A STOW-RS body a little over `dicomweb.max_body_mb` still reaches the app, whose 413
#: names the setting (and a client sending it gets to read that answer); one further over
#: is refused by waitress on its Content-Length, before it spools the body to disk.
BODY_SLACK = 16 << 20


def waitress_limits(settings: Settings) -> dict[str, int]:
    """waitress's own limits, set here rather than left to its defaults (waitress 3.0.2's
    default in each comment). Chunk-size lines and trailers are bounded by
    web.http_limits, for which waitress has no setting."""
    return {
        # Request line and headers together (default 256 KiB, held in memory per
        # connection): our longest are a QIDO query string and a session cookie, well
        # under this; above nginx's default large_client_header_buffers (4 x 8 KiB).
        "max_request_header_size": 64 << 10,
        # The largest body any route takes is a STOW-RS upload of dicomweb.max_body_mb,
        # checked by the app (web/dicomweb.py; 1 MiB elsewhere, Flask's
        # MAX_CONTENT_LENGTH). waitress's 1 GiB default would refuse a STOW-RS body the
        # setting allows (its default is 2048 MiB) and let any route spool 1 GiB.
        "max_request_body_size": (settings.dicomweb.max_body_mb << 20) + BODY_SLACK,
        # Seconds a connection may sit with no request in progress and nothing sent or
        # received, a stalled request or upload included (default 120): idle
        # connections count against connection_limit, so a client that opens them and
        # goes quiet holds them for less long. A request being served is never cut off.
        "channel_timeout": 30,
        # How often that timeout is checked (default 30 s, so up to 150 s in all).
        "cleanup_interval": 10,
        # Open connections at most (waitress's default, kept): past it new ones wait
        # in the listen backlog. A TLS proxy in front (docs/operations.md) holds the
        # slow clients instead.
        "connection_limit": 100,
    }


def _proxy(settings: Settings) -> dict[str, object]:
    if not settings.web.trusted_proxy:
        return {}
    return {
        "trusted_proxy": settings.web.trusted_proxy,
        "trusted_proxy_count": 1,
        "trusted_proxy_headers": {
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-forwarded-port",
        },
    }


class WebServer:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        stow: StowIntake | None = None,
        port: int | None = None,
    ) -> None:
        self.app = create_app(settings, db, stow)
        self._server = create_bounded_server(
            self.app,
            host=settings.web.host,
            port=settings.web.port if port is None else port,
            threads=settings.web.threads,
            ident="radassist",
            # X-Forwarded-* is believed only from web.trusted_proxy (one hop); from
            # anyone else it is dropped, and the connection's address is the client's.
            clear_untrusted_proxy_headers=True,
            **_proxy(settings),
            **waitress_limits(settings),
        )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def url(self) -> str:
        host = self._server.effective_host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{self.port}/"

    def start(self) -> None:
        self.app.extensions["radassist"].audit.start()  # batched audit rows from now on
        self._thread = threading.Thread(target=self._server.run, name="web", daemon=True)
        self._thread.start()
        LOGGER.info("dashboard listening on %s", self.url)

    def stop(self) -> None:
        """Close the listening socket and every open connection on the server's own loop
        thread, which then ends. Closed from this thread, a socket could vanish under the
        loop's select() and kill it with EBADF (waitress issue #468)."""
        try:
            if self._thread is None or not self._thread.is_alive():
                self._server.close()
                return
            try:
                self._server.trigger.pull_trigger(self._close_everything)
            except OSError as exc:
                # The loop's wake-up pipe is gone (seen as EBADF in about one full test
                # run in three; its cause is not found yet): the loop cannot be asked to
                # close, so its sockets are closed from here.
                LOGGER.warning("web server's trigger unusable (%s); closing directly", exc)
                for dispatcher in list(self._server._map.values()):
                    with contextlib.suppress(OSError):  # the trigger's own pipe is gone
                        dispatcher.close()
            self._thread.join(timeout=5)
        finally:
            self.app.extensions["radassist"].audit.stop()  # what is pending, written

    def _close_everything(self) -> None:
        # The loop's socket map: the listener, its trigger and the client connections.
        for dispatcher in list(self._server._map.values()):
            dispatcher.close()
