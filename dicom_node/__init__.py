"""DICOM networking and acceptance only: the storage SCP (``scp``), the C-STORE SCU
(``scu``), C-FIND/C-MOVE (``retrieve``), the STOW-RS client (``stow``), the checks every
received instance passes (``acceptance``), byte-level encodings (``encoding``), TLS
contexts (``tls``) and named status codes (``status``).

Nothing here imports the rest of the project. What to do with a received instance is
passed in when the SCP is built (an :class:`~dicom_node.scp.InstanceSink`), the way
pynetdicom handlers get their arguments bound.
"""

from dicom_node.scp import AssociationSummary, InstanceSink, ReceivedInstance, StorageSCP
from dicom_node.scu import SendResult, send_files
from dicom_node.status import Status, StoreRefused
from dicom_node.uids import is_valid_uid

__all__ = [
    "AssociationSummary",
    "InstanceSink",
    "ReceivedInstance",
    "SendResult",
    "Status",
    "StorageSCP",
    "StoreRefused",
    "is_valid_uid",
    "send_files",
]
