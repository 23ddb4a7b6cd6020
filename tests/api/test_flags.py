"""Feature flags: a flag off answers 403 FEATURE_DISABLED with the flag's own detail."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from chatsite.api import flags
from chatsite.api.errors import ApiError


class DmOnlyView(APIView):
    authentication_classes: list = []
    permission_classes = [flags.feature_permission("dm"), AllowAny]

    def get(self, request):
        return Response({"ok": True})


@override_settings(E2EE_DM_ENABLED=False)
def test_require_feature_off_raises_feature_disabled_with_the_flags_detail():
    with pytest.raises(ApiError) as excinfo:
        flags.require_feature("dm")

    err = excinfo.value
    assert err.code == "FEATURE_DISABLED"
    assert err.status == 403
    assert err.detail == "E2EE DM is not enabled"
    assert err.body() == {"code": "FEATURE_DISABLED", "detail": "E2EE DM is not enabled", "feature": "dm"}


@override_settings(E2EE_DM_ENABLED=True)
def test_require_feature_on_passes():
    assert flags.require_feature("dm") is None


@override_settings(GROUPS_ENABLED=False, E2EE_DM_ENABLED=True)
def test_flags_are_independent():
    assert flags.is_enabled("dm") is True
    assert flags.is_enabled("groups") is False


@override_settings(E2EE_DM_ENABLED=False)
def test_feature_permission_off_answers_403_envelope():
    resp = DmOnlyView.as_view()(APIRequestFactory().get("/dm/anything"))

    assert resp.status_code == 403
    assert resp.data == {"code": "FEATURE_DISABLED", "detail": "E2EE DM is not enabled", "feature": "dm"}


@override_settings(E2EE_DM_ENABLED=True)
def test_feature_permission_on_lets_the_view_run():
    resp = DmOnlyView.as_view()(APIRequestFactory().get("/dm/anything"))

    assert resp.status_code == 200
    assert resp.data == {"ok": True}
