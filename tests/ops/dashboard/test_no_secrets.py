"""No admin page shows ciphertext or key material: with known ciphertext stored in every table
that holds some (DM envelopes, group messages, sender-key envelopes, status posts), every
registered model's changelist and the change pages of (up to three of) its rows are searched for
it, for one-time prekeys and for every device's public keys (identity, signing, signed prekey,
fallback key and their signatures): the server never displays key material (dm/admin/devices.py)."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from dm.models import Delivery, Device, KeyBundle, OneTimePrekey
from groups.models import GroupMessage, SenderKeyEnvelope
from ops.models import IntegrityResult
from status.models import StatusPost
from tests.dm.helpers import party
from tests.factories import MessageFactory
from tests.groups.helpers import distribute, make_group, send
from tests.status.helpers import add_contacts, people, post_id

pytestmark = pytest.mark.django_db(transaction=True)

CIPHERTEXT = "S05PV05DSVBIRVJURVhUU0VDUkVU"  # base64, as clients send it
MEDIA_REF = "media/known-secret-object-key"


def test_no_changelist_or_change_page_shows_ciphertext_or_prekeys(admin_client):
    alice, bob = party(), party()
    dm_message = MessageFactory(ciphertext=CIPHERTEXT)
    group = make_group(alice, bob)
    envelope = {"device_id": bob.device_id, "ciphertext": CIPHERTEXT, "message_type": 0}
    assert distribute(alice, group, envelopes=[envelope]).status_code in (200, 201)
    assert send(alice, group, ciphertext=CIPHERTEXT).status_code == 201
    poster, viewer = people(2)
    add_contacts(poster, viewer)
    post_id(poster, ciphertext=CIPHERTEXT)
    post_id(poster, media_ref=MEDIA_REF, media_meta={"caption_ct": CIPHERTEXT})
    IntegrityResult.objects.create(check_name="groups_without_owner", severity="critical", violations=0)
    prekeys = list(OneTimePrekey.objects.values_list("public_key", flat=True))
    stored = [Delivery, GroupMessage, SenderKeyEnvelope, StatusPost]
    assert all(model.objects.filter(ciphertext=CIPHERTEXT).exists() for model in stored)
    assert prekeys and dm_message.pk

    pages = {}
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        resp = admin_client.get(url)
        assert resp.status_code == 200, url
        pages[url] = resp.content.decode()
        for obj in model_admin.get_queryset(resp.wsgi_request)[:3]:
            change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
            resp = admin_client.get(change)
            assert resp.status_code == 200, change
            pages[change] = resp.content.decode()

    assert len(pages) > 40  # every changelist and some rows of each
    leaks = [
        (url, secret)
        for url, page in pages.items()
        for secret in (CIPHERTEXT, MEDIA_REF, *prekeys)
        if secret in page
    ]
    assert leaks == []
    public_keys = [key for pair in Device.objects.values_list("identity_key", "signing_key") for key in pair]
    for columns in KeyBundle.objects.values_list(
        "signed_prekey", "signed_prekey_signature", "fallback_key", "fallback_key_signature"
    ):
        public_keys += [value for value in columns if value]
    assert public_keys and [url for url in pages if "/keybundle/" in url and url.endswith("/change/")]
    assert [(url, key) for url, page in pages.items() for key in public_keys if key in page] == []
