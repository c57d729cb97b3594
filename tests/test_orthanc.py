"""Orthanc, a real PACS, pushes a study to the node through its REST API."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from assistant.db import Series, SeriesState
from assistant.intake.receiver import Receiver
from tests.helpers import NODE_AE, assert_stored_as_sent, instance_count
from tests.peers.orthanc import Orthanc
from tests.peers.tools import wait_until
from tests.support.ct import dicom_files, shared_ct

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_orthanc_pushes_a_study_to_the_node(
    start_node: Callable[..., Receiver], start_orthanc: Callable[..., Orthanc]
) -> None:
    node = start_node(quiet_seconds=2.0)
    orthanc = start_orthanc({"radassist": (NODE_AE, "127.0.0.1", node.scp.port)})
    files = dicom_files(shared_ct("ge_head_tilted"))
    uploaded = [orthanc.upload(path) for path in files]
    [study_id] = {item["ParentStudy"] for item in uploaded}

    job = orthanc.post_json(
        "/modalities/radassist/store", {"Resources": [study_id], "Synchronous": True}
    )

    assert job["InstancesCount"] == len(files) and job["FailedInstancesCount"] == 0
    assert instance_count(node) == len(files)
    assert_stored_as_sent(node, files)
    with node.db.sessions() as session:
        series = session.scalars(select(Series)).one()
    assert series.calling_ae_title == "ORTHANC"
    # GE's irregular spacing means no early completion: the quiet period decides.
    wait_until(lambda: _state(node) is SeriesState.COMPLETE, timeout=20)


def _state(node: Receiver) -> SeriesState:
    with node.db.sessions() as session:
        return session.scalars(select(Series.state)).one()
