"""The key bundle and one-time prekey changelists show each device by name without loading its
public keys, and cost the same queries for twice the rows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db

CHANGELISTS = ("/admin/dm/keybundle/", "/admin/dm/onetimeprekey/")


def queries(client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return [q["sql"] for q in captured.captured_queries]


@pytest.mark.parametrize("url", CHANGELISTS)
def test_the_changelist_joins_the_device_without_its_keys(admin_client, url):
    DeviceFactory(one_time_prekeys=2)
    few = queries(admin_client, url)
    DeviceFactory(one_time_prekeys=2)
    more = queries(admin_client, url)

    assert len(more) == len(few)
    assert "e2ee_devices" in " ".join(more)
    assert "identity_key" not in " ".join(more)
    assert "signing_key" not in " ".join(more)
