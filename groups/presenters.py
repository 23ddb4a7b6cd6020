"""How membership objects look to clients: pure functions from models to JSON bodies. No reads,
no writes. (Messages, sender keys and fan-out: groups/presenters_messages.py.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from groups.models import Group, Invite, Participant
    from groups.selectors.groups import GroupDetail, MemberView


def group_body(group: Group, role: str) -> dict[str, Any]:
    return {
        "id": str(group.id),
        "title": group.title,
        "group_epoch": group.group_epoch,
        "max_participants": group.max_participants,
        "member_count": group.member_count,
        "role": role,
        "created_at": group.created_at.isoformat(),
    }


def member_body(member: MemberView) -> dict[str, Any]:
    p = member.participant
    return {
        "user_id": p.user_id,
        "username": member.username,
        "role": p.role,
        "joined_at": p.joined_at.isoformat(),
        "devices": [str(d) for d in member.devices],
        "device_keys": [
            {"device_id": str(d), "identity_key": identity, "signing_key": signing}
            for d, identity, signing in member.device_keys
        ],
    }


def group_detail_body(detail: GroupDetail) -> dict[str, Any]:
    return {**group_body(detail.group, detail.role), "members": [member_body(m) for m in detail.members]}


def ban_body(participant: Participant) -> dict[str, Any]:
    return {
        "user_id": participant.user_id,
        "is_banned": participant.is_banned,
        "banned_at": participant.banned_at.isoformat() if participant.banned_at else None,
    }


def invite_body(invite: Invite) -> dict[str, Any]:
    return {
        "code": invite.code,
        "group_id": str(invite.group_id),
        "expires_at": invite.expires_at.isoformat(),
        "max_uses": invite.max_uses,
        "uses": invite.uses,
    }
