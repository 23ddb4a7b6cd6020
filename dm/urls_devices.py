from django.urls import path

from dm.views import devices as views

urlpatterns = [
    path("e2ee/devices", views.DeviceListView.as_view(), name="e2ee-devices"),
    path(
        "e2ee/devices/<uuid:device_id>/prekeys", views.DevicePrekeysView.as_view(), name="e2ee-device-prekeys"
    ),
    path(
        "e2ee/devices/<uuid:device_id>/signed-prekey",
        views.DeviceSignedPrekeyView.as_view(),
        name="e2ee-device-signed-prekey",
    ),
    path("e2ee/devices/<uuid:device_id>", views.DeviceDetailView.as_view(), name="e2ee-device"),
    path("e2ee/bundles/<int:user_id>", views.BundleView.as_view(), name="e2ee-bundle"),
]
