"""Only a device's own session may upload its prekeys or rotate its signed prekey: one-time
prekeys are not signed, so another session of the account (one that only knows the password)
could otherwise fill the pool with keys nobody can decrypt for."""

from __future__ import annotations

import pytest

from dm.models import KeyBundle
from tests.conftest import assert_api_error, client_for
from tests.dm.helpers import add_device, party

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("method,path", [("post", "prekeys"), ("put", "signed-prekey")])
def test_another_device_of_the_account_cannot_upload_a_devices_keys(method, path):
    bob = party()
    tablet = add_device(bob.user, "tablet")
    before = KeyBundle.objects.get(device_id=bob.device_id).prekeys_remaining

    resp = getattr(tablet.client, method)(f"/e2ee/devices/{bob.device_id}/{path}", {}, format="json")

    assert_api_error(resp, code="PERMISSION_DENIED", status=403)
    assert KeyBundle.objects.get(device_id=bob.device_id).prekeys_remaining == before


@pytest.mark.parametrize("method,path", [("post", "prekeys"), ("put", "signed-prekey")])
def test_a_session_without_a_device_cannot_upload_a_devices_keys(method, path):
    bob = party()

    resp = getattr(client_for(bob.user), method)(f"/e2ee/devices/{bob.device_id}/{path}", {}, format="json")

    assert_api_error(resp, code="PERMISSION_DENIED", status=403)
