from django.urls import include, path

from dm.views import messages

urlpatterns = [
    path("", include("dm.urls_devices")),
    path("dm/conversations", messages.ConversationListView.as_view(), name="dm-conversations"),
    path(
        "dm/conversations/<int:conversation_id>/messages", messages.MessageSendView.as_view(), name="dm-send"
    ),
    path("dm/messages", messages.MessageFetchView.as_view(), name="dm-messages"),
    path("dm/ack", messages.AckView.as_view(), name="dm-ack"),
    path("dm/sse", messages.dm_sse, name="dm-sse"),
    path("dm/metrics", messages.DmMetricsView.as_view(), name="dm-metrics"),
]
