"""The admin's Feature flags page: every flag with its effective value and where it comes from,
a toggle / "back to the environment" per flag and a circuit-breaker reset, each through a
confirmation page that asks for a reason. They call the same services as `manage.py feature_flag`
and `manage.py circuit_breaker` (chatsite/api/services.py)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from chatsite.admin_actions import confirmation, reason_of
from chatsite.api import circuit, flags, selectors, services
from chatsite.api.models import DEPENDENCIES, CircuitBreakerReset, FeatureFlag

_VALUES = {"on": True, "off": False, "env": None}


@admin.register(FeatureFlag)
class FeatureFlagAdmin(admin.ModelAdmin):
    """Not the usual changelist: a flag without an override has no row, yet must be listed."""

    # A row's own page only shows it: a change goes through the toggle, which audits it.
    readonly_fields = ("name", "enabled", "changed_by", "reason", "changed_at")

    def has_add_permission(self, request) -> bool:
        return False  # overrides are made by the toggle, which audits them

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        return [
            path(
                "toggle/<str:name>/<str:value>/",
                self.admin_site.admin_view(self.toggle_view),
                name="api_featureflag_toggle",
            ),
            path(
                "circuit-breaker/reset/",
                self.admin_site.admin_view(self.breaker_reset_view),
                name="api_featureflag_breaker_reset",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        resets = {r.dependency: r for r in CircuitBreakerReset.objects.select_related("reset_by")}
        breakers = [
            {"dependency": dep, **circuit.breaker(dep).snapshot(), "last_reset": resets.get(dep)}
            for dep in DEPENDENCIES
        ]
        return TemplateResponse(
            request,
            "admin/api/feature_flags.html",
            {
                **self.admin_site.each_context(request),
                "title": "Feature flags and circuit breakers",
                "opts": self.opts,
                "states": selectors.flag_states(),
                "breakers": breakers,
                "can_change": self.has_change_permission(request),
                "can_reset": request.user.has_perm("api.change_circuitbreakerreset"),
            },
        )

    def toggle_view(self, request, name: str, value: str):
        if not self.has_change_permission(request):
            raise PermissionDenied
        try:
            feature = flags.lookup(name)
        except KeyError:
            raise Http404(f"No flag {name!r}") from None
        if value not in _VALUES:
            raise Http404(f"No value {value!r}")
        enabled = _VALUES[value]
        state = next(s for s in selectors.flag_states() if s.feature == feature)
        after = "the environment's value" if enabled is None else ("on" if enabled else "off")
        page = confirmation(
            self,
            request,
            [state.name],
            action="toggle",
            title=f"Set {state.name} to {after}",
            consequence=(
                f"{state.name} is {'on' if state.effective else 'off'} ({state.source}). Every server "
                f"process follows within FEATURE_FLAG_REFRESH_S; the change is audited."
            ),
            ask_reason=True,
        )
        if page is not None:
            return page
        if enabled is None:
            change = services.flag_clear(name=state.name, by=request.user, reason=reason_of(request))
        else:
            change = services.flag_set(
                name=state.name, enabled=enabled, by=request.user, reason=reason_of(request)
            )
        self.message_user(
            request,
            f"{change.name}: {'on' if change.before else 'off'} -> {'on' if change.after else 'off'} "
            f"({change.source}).",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:api_featureflag_changelist"))

    def breaker_reset_view(self, request):
        if not request.user.has_perm("api.change_circuitbreakerreset"):
            raise PermissionDenied
        dependency = request.GET.get("dependency") or request.POST.get("dependency") or None
        if dependency is not None and dependency not in DEPENDENCIES:
            raise Http404(f"No dependency {dependency!r}")
        deps = [dependency] if dependency else list(DEPENDENCIES)
        page = confirmation(
            self,
            request,
            deps,
            action="breaker_reset",
            title="Reset circuit breakers",
            consequence=(
                "Close these breakers in every server process (within FEATURE_FLAG_REFRESH_S): calls go "
                "to the dependency again at once. Do it when the dependency is healthy again."
            ),
            ask_reason=True,
        )
        if page is not None:
            return page
        done = services.circuit_breaker_reset(
            dependency=dependency, by=request.user, reason=reason_of(request)
        )
        self.message_user(
            request, f"Reset {len(done)} circuit breaker(s): {', '.join(done)}.", messages.SUCCESS
        )
        return HttpResponseRedirect(reverse("admin:api_featureflag_changelist"))
