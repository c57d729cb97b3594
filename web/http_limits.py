"""Bounds on a chunked request body's chunk-size lines and trailer, which waitress 3.0.2
leaves unbounded (its `ChunkedReceiver` carries `max_control_line = 1024` and
`max_trailer = 65536` only as comments). Unbounded, an endless chunk-size line is copied
again with every read (`control_line + s`): `1` and 64 MiB without a line break cost
about 300 s of server CPU (issue 25, finding 5).

Waitress's own classes are used through its hooks, nothing of it is patched: the server's
`channel_class` makes the connections, a connection's `parser_class` parses each
request, and our parser hands a chunked body to `BoundedChunkedReceiver`, which runs
waitress's own `ChunkedReceiver.received` on slices of the input no longer than the
next bound. A line or trailer past its bound is a 400 with `Connection: close`.
"""

from __future__ import annotations

import copy
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.receiver import ChunkedReceiver
from waitress.server import BaseWSGIServer, create_server
from waitress.utilities import BadRequest

#: A chunk-size line with its extensions and its CRLF (real ones are a few bytes).
MAX_CONTROL_LINE = 1024
#: The trailer fields after the last chunk, with the blank line that ends them.
MAX_TRAILER = 64 * 1024


class BoundedChunkedReceiver(ChunkedReceiver):
    """waitress's `ChunkedReceiver` that refuses a chunk-size line longer than
    `max_control_line` bytes or a trailer longer than `max_trailer` bytes (each with its
    line ending). Everything else is waitress's parsing, unchanged."""

    max_control_line = MAX_CONTROL_LINE
    max_trailer = MAX_TRAILER

    def received(self, s: bytes) -> int:
        """Feed waitress's parser the input in slices that end where the current part
        (chunk data, chunk end, chunk-size line or trailer) may end at the latest, so
        that no line or trailer can grow past its bound within one slice, and check the
        bound after each. Returns the number of bytes consumed, as waitress's does."""
        size = len(s)
        consumed = 0
        while s and not self.completed and self.error is None:
            piece = s[: self._room()]
            consumed += super().received(piece)
            if self.error is None and not self.completed:
                self._check_bounds()
            if self.error is not None:
                # As waitress does on an error: all of it is taken (none of it may be
                # read as a next request); the connection is closed after the 400.
                return size
            if self.completed:  # the rest belongs to the next request
                return consumed
            s = s[len(piece) :]
        return consumed

    def _room(self) -> int:
        """How many bytes waitress may parse before a bound must be checked."""
        if self.chunk_remainder > 0:  # chunk data: no bound beyond its size
            return int(self.chunk_remainder)
        if self.validate_chunk_end:  # the CRLF after a chunk's data
            return 2 - len(self.chunk_end)
        if not self.all_chunks_received:  # a chunk-size line
            return self.max_control_line - len(self.control_line)
        return self.max_trailer - len(self.trailer)

    def _check_bounds(self) -> None:
        """A part still unfinished when it has reached its bound can only end past it."""
        if self.chunk_remainder > 0 or self.validate_chunk_end:
            return
        if not self.all_chunks_received:
            if len(self.control_line) >= self.max_control_line:
                self._refuse(f"chunk-size line longer than {self.max_control_line} bytes")
        elif len(self.trailer) >= self.max_trailer:
            self._refuse(f"chunked trailer longer than {self.max_trailer} bytes")

    def _refuse(self, reason: str) -> None:
        self.error = BadRequest(reason)
        self.all_chunks_received = True
        # Drop what was held: the request is answered with 400 and the connection closed.
        self.control_line = b""
        self.trailer = b""


#: The one route that takes large bodies (STOW-RS: POST /dicomweb/studies[/{study}]).
STOW_PATH = "/dicomweb/studies"
#: The largest body any other route is sent before waitress refuses it (413).
OTHER_BODY_LIMIT = 2 << 20


class BoundedRequestParser(HTTPRequestParser):
    """waitress's request parser with `BoundedChunkedReceiver` for chunked bodies."""

    body_rcv: Any  # waitress's: None, a FixedStreamReceiver or a ChunkedReceiver
    adj: Any  # waitress's Adjustments (its limits), per request here

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if not (self.command == "POST" and self.path.startswith(STOW_PATH)):
            # Only STOW-RS takes a large body: every other route is refused past
            # OTHER_BODY_LIMIT before waitress spools it to disk (the app's own limit,
            # MAX_CONTENT_LENGTH, is 1 MiB; the slack lets the app answer its 413).
            self.adj = copy.copy(self.adj)
            self.adj.max_request_body_size = min(self.adj.max_request_body_size, OTHER_BODY_LIMIT)
        if self.chunked and type(self.body_rcv) is ChunkedReceiver:
            # Nothing of the body has been received yet: swap in the bounded receiver
            # on waitress's own buffer.
            self.body_rcv = BoundedChunkedReceiver(self.body_rcv.buf)


class BoundedChannel(HTTPChannel):
    """waitress's HTTP connection, parsing requests with `BoundedRequestParser`."""

    parser_class = BoundedRequestParser


def create_bounded_server(application: Any, **adjustments: Any) -> Any:
    """`waitress.server.create_server(application, **adjustments)` whose listeners make
    `BoundedChannel` connections. Call `run()` after this: a listener accepts
    connections only in its loop."""
    socket_map: dict[int, Any] = {}
    server = create_server(application, map=socket_map, **adjustments)
    for dispatcher in socket_map.values():
        if isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = BoundedChannel
    return server
