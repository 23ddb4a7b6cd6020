"""Ban an abuser (seed 001 "Abuse Burst Response", seed 002 "Compromised User Account"): disable
the account, revoke every session, force-disconnect every socket, and optionally ban the user
from every group they are in; one ACCOUNT_BANNED audit row with who did it and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from django.db import transaction

from chatsite.accounts import selectors as account_selectors
from chatsite.accounts import services as account_services
from chatsite.accounts.models import SecurityEvent, User
from chatsite.realtime import relay
from chatsite.realtime.close_codes import CloseCode
from groups.selectors.members import GroupBan, member_ban_everywhere_plan
from groups.services.remediations import member_ban_everywhere


@dataclass
class BanPlan:
    user_id: int
    username: str
    already_disabled: bool
    live_sessions: int
    groups: list[GroupBan] = field(default_factory=list)  # with groups=True only


@dataclass
class Ban:
    user_id: int
    username: str
    sessions_revoked: int
    groups: list[GroupBan] = field(default_factory=list)


def user_ban_plan(*, user: User, groups: bool) -> BanPlan:
    """Read-only: what `user_ban` would change now. With `groups`, each group's outcome as
    groups' `member_ban_everywhere_plan` gives it (one query): a group the user owns passes to
    its heir unless nobody else is in it: then it is kept."""
    plan = BanPlan(
        user_id=user.pk,
        username=user.username,
        already_disabled=user.disabled,
        live_sessions=account_selectors.sessions_for_user(user=user).count(),
    )
    if groups:
        plan.groups = member_ban_everywhere_plan(user_id=user.pk)
    return plan


@transaction.atomic
def user_ban(*, user: User, by: User | None, reason: str, groups: bool = False) -> Ban:
    """Ban `user`: `account_disable` (the account is disabled, groups it owns pass to their heirs,
    every session is revoked and its streams close after commit), a ForceDisconnect of every
    stream of the user in every process (seed 002's PUBLISH user:<id>, for any stream the session
    revocation would miss), with `groups` a ban from every group (`member_ban_everywhere`), and one
    ACCOUNT_BANNED audit row. One transaction: all of it or nothing; the disconnects are published
    only after commit."""
    revoked = account_services.account_disable(user=user, by=by, reason=reason)
    relay.close_streams(user_id=user.pk, code=CloseCode.UNAUTHENTICATED, reason="account banned")
    ban = Ban(user_id=user.pk, username=user.username, sessions_revoked=revoked)
    if groups:
        ban.groups = member_ban_everywhere(user_id=user.pk)
    account_services.audit_record(
        kind=SecurityEvent.Kind.ACCOUNT_BANNED,
        by=by,
        reason=reason,
        user=user,
        flagged=True,
        sessions_revoked=revoked,
        groups=[asdict(g) for g in ban.groups],
        banned_from_groups=groups,
    )
    return ban
