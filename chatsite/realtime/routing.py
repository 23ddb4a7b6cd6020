from django.urls import path

from chatsite.realtime.consumers import GatewayConsumer

websocket_urlpatterns = [path("ws", GatewayConsumer.as_asgi())]
