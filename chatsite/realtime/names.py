"""Channel-layer group names. Domains never build these strings themselves."""


def user_group(user_id: int) -> str:
    return f"u.{user_id}"


def session_group(session_id) -> str:
    return f"s.{session_id}"


def device_group(device_id) -> str:
    return f"d.{device_id}"


def chat_group(group_id) -> str:
    return f"g.{group_id}"


def room_group(room_id: str) -> str:
    """An ephemeral relay room (groups/rooms.py); room ids are URL-safe tokens."""
    return f"r.{room_id}"
