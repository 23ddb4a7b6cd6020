"""ASGI entry point: HTTP through Django, WebSocket /ws through the realtime gateway."""

import logging
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django_asgi_app = get_asgi_application()  # first: sets up Django before consumers import models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from chatsite.realtime.middleware import OriginCheckMiddleware, TokenAuthMiddleware  # noqa: E402
from chatsite.realtime.routing import websocket_urlpatterns  # noqa: E402
from chatsite.request_logs import AccessLogMiddleware  # noqa: E402

_chosen = {
    "database": settings.DATABASE_BACKEND,
    "channel_layer": settings.CHANNEL_LAYER_BACKEND,
    "celery": "eager (in-process)" if settings.CELERY_TASK_ALWAYS_EAGER else "broker",
}
logging.getLogger("chatsite").info(
    "chatsite starting: " + ", ".join(f"{k}={v}" for k, v in _chosen.items()), extra=_chosen
)

# The access log wraps everything, so refused handshakes and crashed requests get a line too.
application = AccessLogMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": OriginCheckMiddleware(TokenAuthMiddleware(URLRouter(websocket_urlpatterns))),
        }
    )
)
