"""The staff page for the remediations that act on no one model: clear orphaned rows, remove
duplicate participants, reset or flush rate-limit windows. /admin/ops/remediations/ (ops/urls.py),
through `admin.site.admin_view` (staff only, never cached); each action is a superuser's.

The page itself runs no detection query: it shows the counts the integrity checks stored
(ops.integrity.selectors.latest_results, with their time), plus the unique constraint's presence (a
catalog lookup). Counting the rate-limit windows SCANs Redis, so it is done only on request
(`?rate_limits=count`). A button leads to the same confirmation page as the admin's actions
(chatsite/admin_actions.py's template): only then is the chosen action's read-only plan computed
(for orphans and duplicates the integrity runner's count and a LIMITed sample of ids, under its
statement timeout), listing at most SHOWN rows ("… and N more"), with a reason asked for the
audit row; only "Yes, I'm sure" runs the service, once, in its transaction (which finds its rows
itself: the page does not plan again). An action not in ACTIONS is refused
(400). Redis being down (redis.RedisError, the circuit breaker's CircuitOpenError, OSError) is
shown as "Redis unavailable" for the rate-limit parts; the database parts keep working.
"""

from __future__ import annotations

import redis
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from chatsite.accounts.models import User
from chatsite.admin_actions import reason_of
from chatsite.api.errors import ApiError
from groups.services.remediations import UNIQUE_CONSTRAINT, participants_dedupe, unique_constraint_present
from ops.integrity import registry
from ops.integrity.selectors import latest_results
from ops.integrity.services import CheckOutcome, integrity_run
from ops.remediations import orphans, rate_limits

SHOWN = 50
REDIS_UNAVAILABLE = "Redis unavailable"
# Redis down or unreachable: the client's errors (CircuitOpenError, chatsite/api/circuit.py, is a
# redis.ConnectionError), a socket error, or RuntimeError when no REDIS_URL is configured.
REDIS_ERRORS = (redis.RedisError, OSError, RuntimeError)
ORPHAN_ACTIONS = {f"clear_orphans:{kind}": kind for kind in orphans.KINDS}
ACTIONS = frozenset({*ORPHAN_ACTIONS, "dedupe_participants", "reset_rate_limits", "flush_rate_limits"})


def _detected(check_name: str) -> CheckOutcome:
    """The check's count and its first SHOWN ids, now, under INTEGRITY_STATEMENT_TIMEOUT_MS (the
    integrity runner: a LIMITed sample, never every id); not recorded."""
    [outcome] = integrity_run(checks=[registry.get(check_name)], samples=SHOWN, record=False)
    if outcome.error:
        raise ApiError("SERVICE_UNAVAILABLE", f"{check_name} did not finish: {outcome.error}")
    return outcome


def _listed(found: CheckOutcome | list, unit: str) -> list[str]:
    """At most SHOWN lines, then "… and N more"."""
    ids, total = (
        (found.samples, found.violations or 0) if isinstance(found, CheckOutcome) else (found, len(found))
    )
    lines = [f"{unit} {i}" for i in ids[:SHOWN]]
    if total > len(lines):
        lines.append(f"… and {total - len(lines)} more")
    return lines


def _plan(action: str, request: HttpRequest) -> tuple[str, str, list[str]]:
    """(title, consequence, the lines of what would change) for one action of ACTIONS; nothing
    is changed."""
    if action in ORPHAN_ACTIONS:
        kind = ORPHAN_ACTIONS[action]
        table = orphans.KINDS[kind]
        found = _detected(f"orphaned_{kind}")
        return (
            f"Clear orphaned {table} rows",
            f"These {found.violations} {table} rows point at a row that no longer exists; "
            + (
                "each is repointed to its group's latest message at or before its position, or "
                "deleted where there is none."
                if table == "group_delivery"
                else "they are deleted."
            ),
            _listed(found, f"{table} id"),
        )
    if action == "dedupe_participants":
        found = _detected("group_participants_duplicate")
        return (
            "Remove duplicate participants",
            f"{found.violations} (group, user) pair(s) have more than one row: the older rows of each "
            f"are deleted (the kept row takes the highest role), then {UNIQUE_CONSTRAINT} is restored.",
            _listed(found, "group:user"),
        )
    if action == "reset_rate_limits":
        user = _user(request)
        keys = rate_limits.rate_limits_reset_plan(user=user)
        return (
            f"Reset the rate limits of {user.username}",
            "These windows are removed: the user's next requests start counting from zero.",
            _listed(keys, "window"),
        )
    if action == "flush_rate_limits":
        counts = rate_limits.rate_limits_flush_plan()
        return (
            "Flush every rate-limit window",
            f"All {sum(counts.values())} rl:* keys are removed (nothing else in Redis): every limit starts "
            "from zero for everyone.",
            [f"{scope}: {n} window(s)" for scope, n in counts.items()],
        )
    raise AssertionError(f"unhandled action {action!r}")  # ACTIONS is checked before


def _user(request: HttpRequest) -> User:
    name = User.normalize_username(request.POST.get("username", ""))
    user = User.objects.filter(username=name).first()
    if user is None:
        raise ApiError("NOT_FOUND", f"No user {name!r}.")
    return user


def _apply(action: str, request: HttpRequest, reason: str) -> str:
    by = request.user
    if action in ORPHAN_ACTIONS:
        done = orphans.orphans_clear(kind=ORPHAN_ACTIONS[action], by=by, reason=reason)
        repaired = f", repaired {len(done.repaired)}" if done.repaired else ""
        return f"Deleted {len(done.ids)} orphaned {done.table} row(s){repaired}."
    if action == "dedupe_participants":
        result = participants_dedupe(by=by, reason=reason)
        if result.constraint_was_present:
            return f"{UNIQUE_CONSTRAINT} exists: there were no duplicates."
        return f"Deleted {len(result.removed)} duplicate participant(s); {UNIQUE_CONSTRAINT} restored."
    if action == "reset_rate_limits":
        user = _user(request)
        keys = rate_limits.rate_limits_reset(user=user, by=by, reason=reason)
        return f"Removed {len(keys)} rate-limit window(s) of {user.username}."
    if action == "flush_rate_limits":
        removed = rate_limits.rate_limits_flush(by=by, reason=reason)
        return f"Removed {sum(removed.values())} rate-limit window(s) (rl:* keys only)."
    raise AssertionError(f"unhandled action {action!r}")  # ACTIONS is checked before


def _confirm_or_apply(request: HttpRequest, context: dict) -> HttpResponse:
    action = request.POST.get("action", "")
    if action not in ACTIONS:
        messages.error(request, f"Unknown action {action!r}.")
        return TemplateResponse(request, "admin/ops/remediations.html", _overview(context), status=400)
    reason = reason_of(request)
    try:
        if request.POST.get("confirm") == "yes" and reason:
            # The service finds the rows again inside its transaction: no second plan here.
            messages.success(request, _apply(action, request, reason))
            return HttpResponseRedirect(request.path)
        title, consequence, lines = _plan(action, request)
    except ApiError as exc:
        messages.error(request, exc.detail)
        return HttpResponseRedirect(request.path)
    except REDIS_ERRORS as exc:
        messages.error(request, f"{REDIS_UNAVAILABLE} ({type(exc).__name__}): nothing was changed.")
        return HttpResponseRedirect(request.path)
    return TemplateResponse(
        request,
        "admin/chatsite/confirm_action.html",
        {
            **context,
            "title": title,
            "consequence": consequence,
            # `lines`, not `objects`: these are descriptions, not rows with a pk to carry through.
            "lines": lines,
            "action": action,
            "extra_fields": {"username": request.POST.get("username", "")},
            "ask_reason": True,
            "reason": reason,
            "reason_missing": request.POST.get("confirm") == "yes" and not reason,
        },
    )


def _overview(context: dict, *, count_windows: bool = False) -> dict:
    """What the page shows without running any detection: the stored integrity results."""
    stored = {result.check_name: result for result in latest_results()}
    duplicates = stored.get("group_participants_duplicate")
    windows, windows_error = None, ""
    if count_windows:
        try:
            windows = sum(rate_limits.rate_limits_flush_plan().values())
        except REDIS_ERRORS as exc:
            windows_error = f"{REDIS_UNAVAILABLE} ({type(exc).__name__})"
    return context | {
        "title": "Remediations",
        "orphans": [(kind, stored.get(f"orphaned_{kind}")) for kind in orphans.KINDS],
        "constraint_present": unique_constraint_present(),
        "duplicates": duplicates,
        "rate_limit_windows": windows,
        "rate_limit_error": windows_error,
    }


def remediations(request: HttpRequest) -> HttpResponse:
    if not request.user.is_superuser:
        raise PermissionDenied("Remediations are for superusers.")
    context = admin.site.each_context(request)
    if request.method == "POST":
        return _confirm_or_apply(request, context)
    context = _overview(context, count_windows=request.GET.get("rate_limits") == "count")
    return TemplateResponse(request, "admin/ops/remediations.html", context)


remediations_page = admin.site.admin_view(remediations)
