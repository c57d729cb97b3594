"""node.allowed_addresses: peers from elsewhere are closed before any association."""

from __future__ import annotations

import pytest

from assistant.settings import NodeSettings, SettingsError
from tests.helpers import NODE_AE
from tests.peers.dcmtk import echoscu

pytestmark = pytest.mark.integration


def test_an_address_outside_the_list_is_refused(start_node) -> None:  # type: ignore[no-untyped-def]
    node = start_node(
        node=NodeSettings(
            processes=1,
            ae_title=NODE_AE,
            host="127.0.0.1",
            port=0,
            allowed_addresses=("10.0.0.0/8",),
        )
    )
    assert not echoscu(node.scp.port)


def test_an_address_inside_the_list_is_served(start_node) -> None:  # type: ignore[no-untyped-def]
    node = start_node(
        node=NodeSettings(
            processes=1,
            ae_title=NODE_AE,
            host="127.0.0.1",
            port=0,
            allowed_addresses=("10.0.0.0/8", "127.0.0.1"),
        )
    )
    assert echoscu(node.scp.port)


def test_a_bad_address_fails_at_start_up() -> None:
    with pytest.raises(SettingsError, match=r"node\.allowed_addresses"):
        NodeSettings(allowed_addresses=("not-an-address",))
