"""STOW-RS: send DICOM files to a DICOMweb server (dicomweb-client over requests), with
one result per file like the C-STORE sender, so the outbox treats both alike."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import requests
from dicomweb_client.web import DICOMwebClient
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from dicom_node.scu import SendResult

LOGGER = logging.getLogger(__name__)


def _by_uid(sequence: Sequence[Dataset] | None) -> dict[str, Dataset]:
    return {str(item.get("ReferencedSOPInstanceUID", "")): item for item in sequence or ()}


def stow_files(
    paths: Sequence[Path], *, url: str, token: str = "", timeout: float = 60.0
) -> list[SendResult]:
    """POST the files in one STOW-RS request to `url` (the DICOMweb root); each file is
    sent when the response lists it in ReferencedSOPSequence."""
    results: list[SendResult] = []
    datasets: list[tuple[Path, Dataset]] = []
    for path in paths:
        try:
            datasets.append((path, dcmread(path)))
        except (InvalidDicomError, OSError, ValueError) as exc:
            results.append(SendResult(path, None, "failed", f"cannot read: {exc}"))
    if not datasets:
        return results
    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    client = DICOMwebClient(url=url, session=session, timeout=timeout)
    client.set_http_retry_params(retry=False)  # the outbox retries, with its own back-off
    try:
        response = client.store_instances([dataset for _, dataset in datasets])
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else "?"
        detail = f"HTTP {code} from {url}"
        return results + [SendResult(path, None, "failed", detail) for path, _ in datasets]
    except requests.RequestException as exc:
        detail = f"cannot reach {url}: {type(exc).__name__}"
        return results + [SendResult(path, None, "failed", detail) for path, _ in datasets]
    finally:
        session.close()
    stored = _by_uid(response.get("ReferencedSOPSequence"))
    failed = _by_uid(response.get("FailedSOPSequence"))
    for path, dataset in datasets:
        uid = str(dataset.SOPInstanceUID)
        if uid in stored:
            warning = stored[uid].get("WarningReason")
            outcome = "warning" if warning else "sent"
            results.append(SendResult(path, int(warning or 0), outcome))
        elif uid in failed:
            reason = failed[uid].get("FailureReason")
            status = int(reason) if reason is not None else None
            text = f"0x{status:04X}" if status is not None else "no reason"
            results.append(SendResult(path, status, "failed", f"refused by the server ({text})"))
        else:
            results.append(SendResult(path, None, "failed", "not in the server's response"))
    return results
