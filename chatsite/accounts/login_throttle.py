"""The one log-in throttling policy, for the API (`POST /auth/login`) and `/admin/login/` alike.

Goal: an attacker's failures never refuse the victim's correct password from the victim's own,
known address (OWASP Authentication / Credential Stuffing cheat sheets: lock narrowly, slow down
broadly, recognise returning clients). Three rules, each with its own settings:

1. Per (account, address) pair: LOGIN_FAILURE_LIMIT failures in LOGIN_FAILURE_WINDOW_S lock that
   pair alone for LOGIN_LOCKOUT_S. The same account from another address is unaffected.
2. Per address (password spraying): LOGIN_IP_FAILURE_LIMIT failures in LOGIN_IP_FAILURE_WINDOW_S,
   over any accounts, lock the address for LOGIN_LOCKOUT_S, except for *known pairs*: accounts
   that have logged in successfully from that address before (LOGIN_KNOWN_PAIR_TTL_DAYS).
3. Per account, over every address (distributed guessing): from the LOGIN_ACCOUNT_DELAY_AFTER-th
   failure in LOGIN_ACCOUNT_FAILURE_WINDOW_S on, each failure makes *unknown* pairs wait
   LOGIN_ACCOUNT_DELAY_BASE_S, then twice that, ... capped at LOGIN_ACCOUNT_DELAY_MAX_S. Known
   pairs never wait.

Refused attempts check no password and count nothing, so hammering a lock does not extend it.
Unknown usernames are throttled exactly like existing ones (keyed by an HMAC of the normalised
name), so the throttle tells nobody which names exist. Locks and delays are SecurityEvent rows
and `chatsite.security` warnings.

State lives in Redis (`login:*` keys) shared by every process; if Redis is down it degrades to a
per-process store, like chatsite.api.throttling. Lock and wait deadlines are stored as timestamps
from `clock` (a seam: tests move it instead of sleeping); Redis TTLs only clean up.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
import uuid
from datetime import timedelta

import redis
from django.conf import settings
from django.utils import timezone

from chatsite.accounts.models import SecurityEvent, Session, User
from chatsite.api.errors import rate_limited
from chatsite.api.redis import get_redis

security_log = logging.getLogger("chatsite.security")
logger = logging.getLogger("chatsite.ratelimit")

# The time source for windows and deadlines (seconds since the epoch); tests replace it.
clock = time.time

_NO_ADDRESS = "-"
_REFUSED_DETAIL = "Too many failed log-ins; try again later."


# --- Storage: Redis, or a per-process fallback with the same semantics ---------------------------

# Deadlines only move forward, so two racing failures cannot shorten a lock (atomic in Redis).
_RAISE_UNTIL_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 0
"""


class _RedisStore:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def count_event(self, key: str, now: float, window: float) -> int:
        # MULTI/EXEC: trim, add and count happen as one step for every process.
        pipe = self.client.pipeline(transaction=True)
        pipe.zremrangebyscore(key, "-inf", now - window)
        pipe.zadd(key, {uuid.uuid4().hex: now})
        pipe.zcard(key)
        pipe.pexpire(key, math.ceil(window * 1000) + 1000)
        return int(pipe.execute()[2])

    def get_until(self, key: str) -> float:
        value = self.client.get(key)
        return float(value) if value else 0.0

    def raise_until(self, key: str, until: float, now: float) -> None:
        ttl_ms = math.ceil(max(until - now, 0) * 1000) + 1000
        self.client.eval(_RAISE_UNTIL_LUA, 1, key, repr(until), ttl_ms)

    def has(self, key: str) -> bool:
        return bool(self.client.exists(key))

    def mark(self, key: str, ttl_s: int) -> None:
        self.client.set(key, "1", ex=ttl_s)


class _LocalStore:
    """Used only while Redis is unreachable: limits then hold per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[str, list[float]] = {}
        self._until: dict[str, float] = {}
        self._marks: dict[str, float] = {}

    def count_event(self, key: str, now: float, window: float) -> int:
        with self._lock:
            log = [t for t in self._logs.get(key, []) if t > now - window]
            log.append(now)
            self._logs[key] = log
            return len(log)

    def get_until(self, key: str) -> float:
        with self._lock:
            return self._until.get(key, 0.0)

    def raise_until(self, key: str, until: float, now: float) -> None:
        with self._lock:
            self._until[key] = max(until, self._until.get(key, 0.0))

    def has(self, key: str) -> bool:
        with self._lock:
            return self._marks.get(key, 0.0) > time.time()

    def mark(self, key: str, ttl_s: int) -> None:
        with self._lock:
            self._marks[key] = time.time() + ttl_s

    def clear(self) -> None:
        with self._lock:
            self._logs.clear()
            self._until.clear()
            self._marks.clear()


_local = _LocalStore()


def _call(method: str, *args):
    """Run one store operation on Redis, or on the per-process store if Redis fails."""
    client = get_redis()
    if client is not None:
        try:
            return getattr(_RedisStore(client), method)(*args)
        except (redis.RedisError, OSError) as exc:
            from chatsite.metrics import REDIS_ERRORS

            REDIS_ERRORS.labels(component="ratelimit").inc()
            logger.warning("log-in throttle falling back to per-process state: %s", type(exc).__name__)
    return getattr(_local, method)(*args)


def reset_local() -> None:
    """Tests: forget the per-process fallback state."""
    _local.clear()


# --- Keys ----------------------------------------------------------------------------------------


def username_digest(normalised: str) -> str:
    """A short keyed hash of a name that matched no account: correlates attempts, reveals nothing."""
    mac = hmac.new(settings.SECRET_KEY.encode(), b"login-username:" + normalised.encode(), hashlib.sha256)
    return mac.hexdigest()[:16]


def account_key(*, user: User | None, normalised: str) -> str:
    return f"u{user.pk}" if user is not None else f"n{username_digest(normalised)}"


def _pair(account: str, ip: str | None) -> str:
    return f"{account}:{ip or _NO_ADDRESS}"


def _known_key(user_id: int, ip: str) -> str:
    return f"login:known:{user_id}:{ip}"


# --- Known pairs -----------------------------------------------------------------------------------


def is_known_pair(*, user: User | None, ip: str | None) -> bool:
    """Has `user` logged in successfully from `ip` within LOGIN_KNOWN_PAIR_TTL_DAYS?

    Redis remembers every successful log-in (API and admin); the sessions table (which keeps the
    address of each API log-in) answers too, so a Redis restart does not forget the victim.
    """
    if user is None or not ip:
        return False
    if _call("has", _known_key(user.pk, ip)):
        return True
    since = timezone.now() - timedelta(days=settings.LOGIN_KNOWN_PAIR_TTL_DAYS)
    return Session.objects.filter(user=user, ip=ip, created_at__gte=since).exists()


def remember_success(*, user: User, ip: str | None) -> None:
    if ip:
        _call("mark", _known_key(user.pk, ip), settings.LOGIN_KNOWN_PAIR_TTL_DAYS * 86400)


# --- The policy ------------------------------------------------------------------------------------


def raise_if_refused(*, account: str, ip: str | None, known: bool) -> None:
    """429 RATE_LIMITED (with retry_in_seconds) if a lock or delay applies to this attempt."""
    now = clock()
    deadlines = [_call("get_until", f"login:lock:pair:{_pair(account, ip)}")]
    if not known:
        deadlines.append(_call("get_until", f"login:wait:account:{account}"))
        if ip:
            deadlines.append(_call("get_until", f"login:lock:ip:{ip}"))
    until = max(deadlines)
    if until > now:
        raise rate_limited(until - now, _REFUSED_DETAIL)


def _security_event(kind: str, *, user: User | None, ip: str | None, message: str, **data) -> None:
    SecurityEvent.objects.create(kind=kind, user=user, ip=ip, flagged=True, data=data)
    security_log.warning(
        message,
        extra={"event": kind, "ip": ip, "user_id": user.pk if user else None, **data},
    )


def record_failure(*, account: str, ip: str | None, user: User | None, channel: str) -> None:
    """Count one failed password check in every window and apply whatever lock or delay it earns.

    Called only for attempts that `raise_if_refused` let through, so a lock set here is a new
    lock (two racing failures may both record one; the deadline is the later of the two).
    """
    now = clock()
    lockout = settings.LOGIN_LOCKOUT_S

    pair_failures = _call(
        "count_event", f"login:fail:pair:{_pair(account, ip)}", now, settings.LOGIN_FAILURE_WINDOW_S
    )
    if pair_failures >= settings.LOGIN_FAILURE_LIMIT:
        _call("raise_until", f"login:lock:pair:{_pair(account, ip)}", now + lockout, now)
        _security_event(
            SecurityEvent.Kind.LOGIN_LOCKED,
            user=user,
            ip=ip,
            message="security event: log-in locked",
            by="pair",
            account=account,
            failures=pair_failures,
            lockout_s=lockout,
            channel=channel,
        )

    if ip:
        ip_failures = _call("count_event", f"login:fail:ip:{ip}", now, settings.LOGIN_IP_FAILURE_WINDOW_S)
        if ip_failures >= settings.LOGIN_IP_FAILURE_LIMIT:
            _call("raise_until", f"login:lock:ip:{ip}", now + lockout, now)
            _security_event(
                SecurityEvent.Kind.LOGIN_LOCKED,
                user=user,
                ip=ip,
                message="security event: log-in locked",
                by="ip",
                failures=ip_failures,
                lockout_s=lockout,
                channel=channel,
            )

    account_failures = _call(
        "count_event", f"login:fail:account:{account}", now, settings.LOGIN_ACCOUNT_FAILURE_WINDOW_S
    )
    over = account_failures - settings.LOGIN_ACCOUNT_DELAY_AFTER
    if over >= 0:
        delay = min(
            settings.LOGIN_ACCOUNT_DELAY_BASE_S * 2 ** min(over, 32), settings.LOGIN_ACCOUNT_DELAY_MAX_S
        )
        _call("raise_until", f"login:wait:account:{account}", now + delay, now)
        _security_event(
            SecurityEvent.Kind.LOGIN_DELAYED,
            user=user,
            ip=ip,
            message="security event: log-in delayed",
            by="account",
            account=account,
            failures=account_failures,
            delay_s=delay,
            channel=channel,
        )
