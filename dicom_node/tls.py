"""DICOM TLS contexts (PS3.15 Annex B, the BCP 195 profile as Python's defaults give it):
one for the SCP we run, one for each peer we connect to. Paths in, contexts out."""

from __future__ import annotations

import ssl


def server_context(cert: str, key: str = "", ca: str = "") -> ssl.SSLContext | None:
    """The SCP's context when a certificate is configured (None: plain TCP); with `ca`,
    mutual TLS: a caller must present a certificate signed by it."""
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key or None)
    if ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=ca)
    return context


def client_context(ca: str = "", cert: str = "", key: str = "") -> ssl.SSLContext:
    """A context for connecting to a peer: verify it against `ca` (empty: the system's
    CAs) and present our certificate when one is configured."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca or None)
    if cert:
        context.load_cert_chain(cert, key or None)
    return context
