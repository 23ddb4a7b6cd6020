from django.urls import path

from chatsite.accounts import views

urlpatterns = [
    path("auth/register", views.RegisterView.as_view(), name="auth-register"),
    path("auth/login", views.LoginView.as_view(), name="auth-login"),
    path("auth/logout", views.LogoutView.as_view(), name="auth-logout"),
    path("auth/sessions", views.SessionListView.as_view(), name="auth-sessions"),
    path("auth/stream-ticket", views.StreamTicketView.as_view(), name="auth-stream-ticket"),
    path("auth/sessions/<uuid:session_id>", views.SessionDetailView.as_view(), name="auth-session"),
    path("users/lookup", views.UserLookupView.as_view(), name="user-lookup"),
    path("contacts", views.ContactListView.as_view(), name="contacts"),
    path("contacts/<int:user_id>", views.ContactDetailView.as_view(), name="contact"),
    path("blocks", views.BlockListView.as_view(), name="blocks"),
    path("blocks/<int:user_id>", views.BlockDetailView.as_view(), name="block"),
]
