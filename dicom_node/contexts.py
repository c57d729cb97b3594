"""Which SOP classes and transfer syntaxes the node accepts."""

from __future__ import annotations

from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AllStoragePresentationContexts

#: Every transfer syntax a storage SCP offers: the three uncompressed ones, deflate,
#: and the compressed syntaxes CT scanners and PACS send. The SCP never decodes pixel
#: data, so accepting a syntax costs nothing; the imaging code decodes later.
STORAGE_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)

#: Every storage SOP class in the standard (pynetdicom's list, kept up to date with it).
STORAGE_SOP_CLASSES: tuple[UID, ...] = tuple(
    UID(cx.abstract_syntax) for cx in AllStoragePresentationContexts if cx.abstract_syntax
)

#: The Verification SOP Class (C-ECHO). Spelled out: pynetdicom.sop_class creates its
#: named SOP classes at import time, so its type information does not declare them.
VERIFICATION: UID = UID("1.2.840.10008.1.1")

UNCOMPRESSED_TRANSFER_SYNTAXES: frozenset[str] = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian}
)
