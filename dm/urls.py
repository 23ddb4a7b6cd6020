from django.urls import path

from dm.views import devices, messages

urlpatterns = [
    path("e2ee/devices", devices.DeviceListView.as_view(), name="e2ee-devices"),
    path(
        "e2ee/devices/<uuid:device_id>/prekeys",
        devices.DevicePrekeysView.as_view(),
        name="e2ee-device-prekeys",
    ),
    path(
        "e2ee/devices/<uuid:device_id>/signed-prekey",
        devices.DeviceSignedPrekeyView.as_view(),
        name="e2ee-device-signed-prekey",
    ),
    path(
        "e2ee/devices/<uuid:device_id>/challenge",
        devices.DeviceChallengeView.as_view(),
        name="e2ee-device-challenge",
    ),
    path("e2ee/devices/<uuid:device_id>/bind", devices.DeviceBindView.as_view(), name="e2ee-device-bind"),
    path("e2ee/devices/<uuid:device_id>", devices.DeviceDetailView.as_view(), name="e2ee-device"),
    path("e2ee/bundles/<int:user_id>", devices.BundleView.as_view(), name="e2ee-bundle"),
    path("dm/conversations", messages.ConversationListView.as_view(), name="dm-conversations"),
    path(
        "dm/conversations/<int:conversation_id>/messages", messages.MessageSendView.as_view(), name="dm-send"
    ),
    path("dm/messages", messages.MessageFetchView.as_view(), name="dm-messages"),
    path("dm/ack", messages.AckView.as_view(), name="dm-ack"),
    path("dm/sse", messages.dm_sse, name="dm-sse"),
    path("dm/metrics", messages.DmMetricsView.as_view(), name="dm-metrics"),
]
