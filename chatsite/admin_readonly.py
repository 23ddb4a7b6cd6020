"""The base of support staff's read-only admin pages: they look, and act only through explicit
actions that call a service (chatsite/admin_actions.py), never by editing rows."""

from django.contrib import admin


class ReadOnlyModelAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
