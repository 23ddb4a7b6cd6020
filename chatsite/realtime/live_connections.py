"""Every live stream's metadata in Redis, for the connection-storm runbook (seed 004, runbook 2:
connections by source address, by user agent, by user), readable from any process (`manage.py
connections_report`, the staff pages) and across every web process.

The per-process slot counter (limits.ConnectionCounter) knows addresses only inside its own
process, and nothing recorded user agents. Here each stream writes one small hash,
`rt:conn:<channel>` = {user_id, transport, ip, user_agent, since}, when it opens and again at
every heartbeat (WS_PING_INTERVAL_MS), with a TTL of REALTIME_CONNECTION_RECORD_TTL_S; it is
deleted when the stream ends. Bounded: one key per live stream (itself bounded by
MAX_TOTAL_CONNECTIONS per process), the user agent cut to REALTIME_USER_AGENT_MAX_CHARS, and a
process that dies leaves nothing behind for longer than the TTL. Best effort: without Redis
(embedded mode, an outage) nothing is recorded and streams are not affected.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings

from chatsite.api.redis import get_async_redis, get_redis

if TYPE_CHECKING:
    from chatsite.realtime.stream import Stream

logger = logging.getLogger("chatsite.realtime")

PREFIX = "rt:conn:"


def _key(channel: str) -> str:
    return f"{PREFIX}{channel}"


async def record(stream: Stream) -> None:
    """Write (or refresh) the stream's record; called on open and at every heartbeat."""
    if not settings.REDIS_URL:
        return
    fields = {
        "user_id": stream.user_id,
        "transport": stream.transport,
        "ip": stream.client_ip or "",
        "user_agent": stream.user_agent[: settings.REALTIME_USER_AGENT_MAX_CHARS],
        "since": stream.opened_at,
    }
    try:
        pipe = get_async_redis().pipeline(transaction=False)
        pipe.hset(_key(stream.channel_name), mapping=fields)
        pipe.expire(_key(stream.channel_name), settings.REALTIME_CONNECTION_RECORD_TTL_S)
        await pipe.execute()
    except (redis.RedisError, OSError) as exc:
        logger.debug("connection record not written: %r", exc)


async def forget(stream: Stream) -> None:
    if not settings.REDIS_URL:
        return
    try:
        await get_async_redis().delete(_key(stream.channel_name))
    except (redis.RedisError, OSError) as exc:
        logger.debug("connection record not deleted (it expires): %r", exc)


def snapshot(*, max_records: int | None = None) -> list[dict[str, Any]]:
    """The records of every live stream in every process (at most `max_records`, by default
    REALTIME_CONNECTION_SNAPSHOT_MAX_RECORDS), read with SCAN and pipelined HGETALLs,
    REALTIME_CONNECTION_SCAN_BATCH keys per SCAN page and per pipeline. Raises RuntimeError
    without Redis."""
    client = get_redis()
    if client is None:
        raise RuntimeError("REDIS_URL is not set: live connections are known only per process")
    if max_records is None:
        max_records = settings.REALTIME_CONNECTION_SNAPSHOT_MAX_RECORDS
    batch = settings.REALTIME_CONNECTION_SCAN_BATCH
    keys = []
    for key in client.scan_iter(match=f"{PREFIX}*", count=batch):
        if len(keys) >= max_records:
            break
        keys.append(key)
    out: list[dict[str, Any]] = []
    for start in range(0, len(keys), batch):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + batch]:
            pipe.hgetall(key)
        for raw in pipe.execute():
            if not raw:
                continue  # expired or ended between SCAN and HGETALL
            row = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
            row["user_id"] = int(row.get("user_id") or 0)
            row["age_s"] = max(0.0, time.time() - float(row.get("since") or time.time()))
            out.append(row)
    return out


def check_record_ttl(app_configs=None, **kwargs) -> list:
    """Django system check (realtime.E001): a record must outlive the heartbeat that refreshes it
    (REALTIME_CONNECTION_RECORD_TTL_S > WS_PING_INTERVAL_MS / 1000), or a live stream's record
    lapses between heartbeats and the connection-storm report under-counts."""
    from django.core.checks import Error

    ttl, interval_s = settings.REALTIME_CONNECTION_RECORD_TTL_S, settings.WS_PING_INTERVAL_MS / 1000
    if ttl > interval_s:
        return []
    return [
        Error(
            f"REALTIME_CONNECTION_RECORD_TTL_S ({ttl}) must be greater than the heartbeat interval "
            f"WS_PING_INTERVAL_MS / 1000 ({interval_s:g} s): live streams' records would expire "
            "between heartbeats.",
            hint="Raise REALTIME_CONNECTION_RECORD_TTL_S (say, to 3 heartbeats) or lower "
            "WS_PING_INTERVAL_MS.",
            id="realtime.E001",
        )
    ]
