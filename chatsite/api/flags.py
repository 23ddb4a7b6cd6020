"""Feature flags: one place that says which flag guards which feature and what a client is told.

The environment gives each flag's default (a setting, seed 000 "Hotfix Rollback"); an operator
can override it at runtime (`python manage.py feature_flag`, the admin's Feature flags page),
which writes a row of `feature_flags` (chatsite/api/models.py) and an audit row in one
transaction. Clearing the override returns the flag to the environment's value.

How every process follows (docs/operations.md "Feature flags at runtime"): each process keeps
the overrides in memory and one daemon thread per process (the *refresher*) re-reads the table
every FEATURE_FLAG_REFRESH_S (default 2 s) through the ORM on its own connection. It starts on
the first flag check of the process (or when a circuit breaker opens), not at import: a
management command that checks no flag (migrate) never starts it. An exception in a refresh is
logged and the loop carries on; a refresher that died anyway is started again by the next flag
check; a forked child gets a fresh lock and starts its own. `is_enabled`
never touches the database, so it costs nothing per request, adds no query to any view, and is
safe on the event loop (consumers, frame handlers, stream ticks) where the ORM would raise
SynchronousOnlyOperation. A process that wrote the change itself applies it at commit, without
waiting for its refresher. The setting is read at call time, so override_settings keeps working
whenever no override row exists.

The refresher also reads the circuit breakers' reset generations (chatsite/api/circuit.py), so a
reset from any process reaches every process the same way.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from rest_framework.permissions import BasePermission

from chatsite.api.errors import ApiError

logger = logging.getLogger("chatsite.api")


@dataclass(frozen=True)
class Flag:
    setting: str
    disabled_detail: str
    # The operator's name for it (runbooks, `manage.py feature_flag`, the feature_flags row).
    name: str
    code: str = "FEATURE_DISABLED"


FLAGS: dict[str, Flag] = {
    "dm": Flag("E2EE_DM_ENABLED", "E2EE DM is not enabled", "E2EE_DM"),
    "groups": Flag("GROUPS_ENABLED", "Groups are not enabled", "GROUPS"),
    "status": Flag("STATUS_ENABLED", "Status is not enabled", "STATUS"),
    "presence": Flag("PRESENCE_ENABLED", "Presence is not enabled", "PRESENCE"),
    # The data-corruption runbook's "stop the bleed" (seed 004): every message write is refused
    # (503) while every read keeps working. Which writes count: docs/operations.md.
    "message_write": Flag(
        "MESSAGE_WRITE_ENABLED",
        "Message writes are paused by the operators; reading still works. Retry later.",
        "MESSAGE_WRITE",
        code="MESSAGE_WRITE_DISABLED",
    ),
}

# The operator's name ("E2EE_DM") -> the key code uses ("dm").
BY_NAME: dict[str, str] = {flag.name: key for key, flag in FLAGS.items()}


def lookup(name: str) -> str:
    """The FLAGS key for an operator's name or a key, case-insensitively; KeyError if unknown."""
    if name.lower() in FLAGS:
        return name.lower()
    return BY_NAME[name.upper()]


def env_default(feature: str) -> bool:
    return bool(getattr(settings, FLAGS[feature].setting))


def override_of(feature: str) -> bool | None:
    """The runtime override this process knows of (None: the environment decides)."""
    return overrides.get(FLAGS[feature].name)


def is_enabled(feature: str) -> bool:
    override = override_of(feature)
    return env_default(feature) if override is None else override


def require_feature(feature: str) -> None:
    if not is_enabled(feature):
        flag = FLAGS[feature]
        raise ApiError(flag.code, flag.disabled_detail, feature=feature)


def require_message_write() -> None:
    """The guard at the top of the two message-send services (dm and group sends): 503
    MESSAGE_WRITE_DISABLED for REST, the same code in an error frame on /ws. Not guarded, by
    design: acknowledgements, sender-key distributions and status posts (docs/operations.md
    "Feature flags at runtime", "What MESSAGE_WRITE=off stops")."""
    require_feature("message_write")


def feature_permission(feature: str) -> type[BasePermission]:
    """A DRF permission class: put it first in a view's permission_classes."""

    class FeatureEnabled(BasePermission):
        def has_permission(self, request, view) -> bool:
            require_feature(feature)
            return True

    FeatureEnabled.__name__ = f"FeatureEnabled_{feature}"
    return FeatureEnabled


# --- The per-process view of the overrides, and its refresher thread ------------------------


class Overrides:
    """The overrides of this process. Written by the refresher thread and by `set_local` (a
    change this process committed); read lock-free (a dict swap is atomic)."""

    FIRST_LOAD_WAIT_S = 1.0

    def __init__(self) -> None:
        self._values: dict[str, bool] = {}
        self._lock = threading.Lock()
        # Bumped by every local write: a refresh that read the table before the write must not
        # put the older values back (it is dropped; the next one reads the new state).
        self._generation = 0
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._loaded = threading.Event()
        self._stop = threading.Event()
        self.loaded_at: float | None = None  # monotonic time of the last successful read
        self._failing = False

    def get(self, name: str) -> bool | None:
        self._ensure_running()
        return self._values.get(name)

    def snapshot(self) -> dict[str, bool]:
        self._ensure_running()
        return dict(self._values)

    def set_local(self, name: str, enabled: bool | None) -> None:
        with self._lock:
            self._generation += 1
            values = dict(self._values)
            if enabled is None:
                values.pop(name, None)
            else:
                values[name] = enabled
            self._values = values

    def forget(self) -> None:
        """Tests: drop every override this process knows of (the next refresh reads them again)."""
        with self._lock:
            self._generation += 1
            self._values = {}

    def start(self) -> None:
        """Start the refresher if it is not running; never waits for its first read."""
        self._ensure_running(wait=False)

    def stop(self) -> None:
        """End the refresher (tests, before the test database's pools close); it does not
        start again in this process, and the last known overrides stay."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _running(self) -> bool:
        thread = self._thread
        return self._pid == os.getpid() and thread is not None and thread.is_alive()

    def _ensure_running(self, *, wait: bool = True) -> None:
        if self._running() or self._stop.is_set():
            return
        with self._lock:
            if self._running() or self._stop.is_set():
                return
            # First call in this process (or in a forked child, which has no threads), or the
            # refresher died: start it.
            if self._thread is not None and self._pid == os.getpid():
                logger.warning("feature flags: the refresher thread had stopped; starting it again")
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="feature-flag-refresher", daemon=True)
            self._thread.start()
        if wait and not _on_event_loop():
            # A sync caller waits (bounded) for the first read instead of answering with the
            # environment's value while an override exists; the event loop never waits.
            self._loaded.wait(self.FIRST_LOAD_WAIT_S)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:
                # Whatever escapes a refresh (closing the connection, applying a breaker reset)
                # must not end the thread: every process would stop following the overrides.
                logger.exception("feature flags: refresh raised; the refresher carries on")
            self._loaded.set()
            self._stop.wait(self._interval())

    @staticmethod
    def _interval() -> float:
        try:
            return max(0.05, float(getattr(settings, "FEATURE_FLAG_REFRESH_S", 2.0)))
        except (TypeError, ValueError):
            return 2.0

    def _after_fork_in_child(self) -> None:
        """A fork while the refresher held the lock (or an event's) would deadlock the child: it
        gets fresh ones and no thread (the first flag check starts its own)."""
        stopped = self._stop.is_set()
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._stop = threading.Event()
        if stopped:
            self._stop.set()
        self._thread = None
        self._pid = None

    def refresh(self) -> bool:
        """Read the overrides (and the breaker reset generations) now; False if the read failed
        (the last known values stay)."""
        from chatsite.api import circuit
        from chatsite.api.models import CircuitBreakerReset, FeatureFlag

        generation = self._generation
        try:
            values = dict(FeatureFlag.objects.values_list("name", "enabled"))
            resets = dict(CircuitBreakerReset.objects.values_list("dependency", "generation"))
        except Exception as exc:
            # Keep the last known overrides. A database error is said once per outage, not every
            # interval; anything else (e.g. pytest refusing database access to a test) is quiet.
            if isinstance(exc, DatabaseError) and not self._failing:
                logger.warning(
                    "feature flags: refresh failed, keeping the last known values: %s", type(exc).__name__
                )
                self._failing = True
            return False
        finally:
            if threading.current_thread() is self._thread:
                connection.close()  # back to the pool; this thread holds no connection between reads
        if self._failing:
            logger.info("feature flags: refresh works again")
        self._failing = False
        with self._lock:
            if generation == self._generation:
                self._values = values
            self.loaded_at = time.monotonic()
        circuit.apply_reset_generations(resets)
        return True


def _on_event_loop() -> bool:
    try:
        import asyncio

        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


overrides = Overrides()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=overrides._after_fork_in_child)


def apply_on_commit(name: str, enabled: bool | None) -> None:
    """After the writing transaction commits, this process uses the new value at once (the
    others within FEATURE_FLAG_REFRESH_S)."""
    transaction.on_commit(lambda: overrides.set_local(name, enabled))
