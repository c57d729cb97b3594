"""The dashboard served by waitress (a production WSGI server) in a background thread, so
that `radassist serve` runs it beside the DICOM node and the worker."""

from __future__ import annotations

import logging
import threading

from waitress.server import create_server

from assistant.db import Database
from assistant.intake.stow import StowIntake
from assistant.settings import Settings
from web import create_app

LOGGER = logging.getLogger(__name__)


class WebServer:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        stow: StowIntake | None = None,
        port: int | None = None,
    ) -> None:
        self.app = create_app(settings, db, stow)
        self._server = create_server(
            self.app,
            host=settings.web.host,
            port=settings.web.port if port is None else port,
            threads=settings.web.threads,
            ident="radassist",
            clear_untrusted_proxy_headers=True,
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
        self._thread = threading.Thread(target=self._server.run, name="web", daemon=True)
        self._thread.start()
        LOGGER.info("dashboard listening on %s", self.url)

    def stop(self) -> None:
        """Close the listening socket and every open connection on the server's own loop
        thread, which then ends. Closed from this thread, a socket could vanish under the
        loop's select() and kill it with EBADF (waitress issue #468)."""
        if self._thread is None or not self._thread.is_alive():
            self._server.close()
            return
        self._server.trigger.pull_trigger(self._close_everything)
        self._thread.join(timeout=5)

    def _close_everything(self) -> None:
        # The loop's socket map: the listener, its trigger and the client connections.
        for dispatcher in list(self._server._map.values()):
            dispatcher.close()
