"""Settings for chatsite, read from the environment (12-factor, django-environ).

Every limit and feature flag named in the runbooks (../shared/seeds) is a setting here under the
runbook's own name, with the runbook's default. `.env.example` lists them all.

Embedded mode: with DATABASE_URL / REDIS_URL unset, the server runs on a SQLite file, the
in-memory channel layer and in-process Celery tasks, so `make run` needs no services.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from chatsite import drop_empty_metrics_dir

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None
drop_empty_metrics_dir()  # .env may have set PROMETHEUS_MULTIPROC_DIR= (empty means off)

VERSION = "0.1.0"

# --- Core -----------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
if DEBUG:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="dev-only-insecure-key-" + "x" * 40)
else:
    # Production has no default: a missing or empty secret stops start-up (ImproperlyConfigured;
    # manage.py and the server launcher print it as one line, chatsite/startup.py).
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set: production (DJANGO_DEBUG=false) needs a secret; set it in "
            "the environment or in .env (see .env.example)"
        )
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served as our own static files
    "channels",
    "django_prometheus",
    "chatsite.accounts",
    "chatsite.api",
    "chatsite.realtime",
    "dm",
    "groups",
    "status",
    "presence",
    "ops",
]

MIDDLEWARE = [
    "ops.middleware.ProbeMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "chatsite.request_logs.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files: after the HTTPS redirect, ahead of sessions and routing. WhiteNoise is
    # sync-only, so under daphne it and the middleware above run in a worker thread per request;
    # against this chain without it (1, 8 and 16 clients) the cost was within the noise.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chatsite.api.middleware.JsonExceptionMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last: its process_request fails fast while the breaker is open, and that 503 still passes
    # PrometheusAfterMiddleware (django_http_responses_total_by_status counts it, so error-rate
    # alerts see the outage); process_exception runs in reverse order, so it still sees a
    # database outage before JsonExceptionMiddleware (503 DATABASE_UNAVAILABLE, not 500).
    "chatsite.api.circuit.DatabaseBreakerMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
APPEND_SLASH = False  # REST paths have no trailing slash and must never redirect.
WSGI_APPLICATION = None
ASGI_APPLICATION = "chatsite.asgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    # Spaces and invisible characters do not count towards the length (eight spaces is refused).
    {"NAME": "chatsite.accounts.validators.VisibleCharactersValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Static files: WhiteNoise serves them from the app, under daphne, in every shape ---------
STATIC_URL = "static/"
# Where `collectstatic` puts the files production serves (the image collects at build time).
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Production: hashed names (cached for ever by browsers) and gzip copies, from collectstatic.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# `make run` (DEBUG) serves straight from the apps' static/ directories and looks each file up
# again on every request, so there is no collectstatic step to forget and an edited file shows on
# reload. Without DEBUG only STATIC_ROOT is served, indexed once at start-up (WhiteNoise says
# autorefresh is for development only).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env.str("DATABASE_URL", default="")
DB_POOL_MIN_SIZE = env.int("DB_POOL_MIN_SIZE", default=2)
# Seed 004's runbook raises the pool with DATABASE_POOL_MAX; that name is still read as the default.
DB_POOL_MAX_SIZE = env.int("DB_POOL_MAX_SIZE", default=env.int("DATABASE_POOL_MAX", default=20))
# Seconds a request waits for a pooled connection before it fails (counted by the database
# circuit breaker); and the cap on any one statement (seed 004 "Database Saturation": 30 s).
DB_POOL_TIMEOUT = env.float("DB_POOL_TIMEOUT", default=10.0)
DB_STATEMENT_TIMEOUT_MS = env.int("DB_STATEMENT_TIMEOUT_MS", default=30000)
# Seconds to wait for a new PostgreSQL connection (libpq connect_timeout).
DB_CONNECT_TIMEOUT_S = env.int("DB_CONNECT_TIMEOUT_S", default=5)
if DATABASE_URL:
    _db = env.db_url_config(DATABASE_URL)
    if _db["ENGINE"].endswith("postgresql"):
        # Under ASGI every thread would keep its own persistent connection (CONN_MAX_AGE > 0)
        # until PostgreSQL refuses clients; Django's psycopg pool bounds them instead.
        _db["CONN_MAX_AGE"] = 0
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": DB_POOL_MIN_SIZE,
            "max_size": DB_POOL_MAX_SIZE,
            "timeout": DB_POOL_TIMEOUT,
        }
        _db["OPTIONS"].setdefault("connect_timeout", DB_CONNECT_TIMEOUT_S)
        if DB_STATEMENT_TIMEOUT_MS:
            # Set per connection at start-up (libpq options), so it holds for every statement.
            _db["OPTIONS"].setdefault("options", f"-c statement_timeout={DB_STATEMENT_TIMEOUT_MS}")
    DATABASES = {"default": _db}
    DATABASE_BACKEND = "postgresql" if _db["ENGINE"].endswith("postgresql") else _db["ENGINE"]
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env.str("SQLITE_PATH", default=str(BASE_DIR / "db.sqlite3")),
            "OPTIONS": {"timeout": 20},
        }
    }
    DATABASE_BACKEND = "sqlite"

# --- Redis: channel layer, cache, rate limits, Celery ----------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# How many messages one channel may queue in Redis before channels-redis refuses more. The
# default of 100 silently drops about half of a 100-member group burst; correctness comes from
# the database cursors anyway, this only keeps the live path from dropping under bursts.
CHANNEL_LAYER_CAPACITY = env.int("CHANNEL_LAYER_CAPACITY", default=1500)
# redis-py's async pool defaults to 100 connections; a burst of 1,000 connects would fail in
# group_add, so the pool is sized explicitly.
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", default=1000)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # The core layer, not the pub/sub one: pub/sub silently loses messages when its
            # connection drops and never calls its reconnect hooks.
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "max_connections": REDIS_MAX_CONNECTIONS,
                        "socket_connect_timeout": 2,
                    }
                ],
                "capacity": CHANNEL_LAYER_CAPACITY,
                "expiry": env.int("CHANNEL_LAYER_EXPIRY_S", default=30),
                "prefix": "asgi",
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "api:cache",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    CHANNEL_LAYER_BACKEND = "redis"
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYER_BACKEND = "memory"

# --- Celery (app in chatsite/celery.py) ------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
# Without a broker, tasks run in-process so the embedded server needs nothing else.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
# Celery beat: TTL cleanup and integrity checks (later issues add theirs here).
CELERY_BEAT_SCHEDULE: dict = {
    "dm-purge-deliveries": {"task": "dm.tasks.purge_deliveries", "schedule": 600.0},
    "groups-purge-messages": {"task": "groups.tasks.purge_group_messages", "schedule": 600.0},
    # Status (status/tasks.py): delete expired posts with their audience and views, in batches.
    "status-cleanup-expired": {"task": "status.tasks.cleanup_expired_posts", "schedule": 300.0},
    # Presence (presence/tasks.py): clear stale device_online, flush last_seen_at in batches.
    "presence-sweep": {"task": "presence.tasks.sweep_presence", "schedule": 30.0},
    "presence-flush": {"task": "presence.tasks.flush_last_seen", "schedule": 60.0},
}

# --- REST framework / OpenAPI -----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["chatsite.accounts.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["chatsite.api.parsers.JSONParser"],  # depth-limited (JSON_MAX_DEPTH)
    "EXCEPTION_HANDLER": "chatsite.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "chatsite API",
    "DESCRIPTION": 'E2EE chat backend. Errors are always {"code", "detail"}; see README.',
    "VERSION": VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # /schema/docs/ loads Swagger UI from our own static files (drf-spectacular-sidecar), never
    # from a CDN: it works offline and changes only when requirements.txt does.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # validatorUrl null: Swagger UI's default would send the schema's URL to validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    # Ours last, after the enum hook, so the ApiError envelope's code list stays inline. It adds
    # the error responses every operation of a kind has and the plain views (/dm/sse, probes).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "chatsite.api.schema.postprocess_schema",
    ],
}

# Untrusted JSON (REST bodies and /ws frames) may nest at most this deep (chatsite/api/json_input.py).
JSON_MAX_DEPTH = env.int("JSON_MAX_DEPTH", default=32)

# --- Accounts and sessions -------------------------------------------------------------------
AUTH_TOKEN_TTL_HOURS = env.int("AUTH_TOKEN_TTL_HOURS", default=24 * 30)
# A stream ticket (POST /auth/stream-ticket, for ?ticket= on /ws and /dm/sse) is single-use and
# lives this many seconds (chatsite/accounts/tickets.py).
STREAM_TICKET_TTL_S = env.int("STREAM_TICKET_TTL_S", default=60)
# Log-in throttling (chatsite/accounts/login_throttle.py; policy in docs/operations.md).
# Per (account, address) pair: this many failures in the window lock that pair only.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
LOGIN_FAILURE_WINDOW_S = env.int("LOGIN_FAILURE_WINDOW_S", default=60)
LOGIN_LOCKOUT_S = env.int("LOGIN_LOCKOUT_S", default=300)
# Per address (password spraying): locks the address for LOGIN_LOCKOUT_S, except for pairs that
# have logged in before ("known pairs", remembered LOGIN_KNOWN_PAIR_TTL_DAYS).
LOGIN_IP_FAILURE_LIMIT = env.int("LOGIN_IP_FAILURE_LIMIT", default=50)
LOGIN_IP_FAILURE_WINDOW_S = env.int("LOGIN_IP_FAILURE_WINDOW_S", default=300)
LOGIN_KNOWN_PAIR_TTL_DAYS = env.int("LOGIN_KNOWN_PAIR_TTL_DAYS", default=90)
# Per account, from every address (distributed guessing): after this many failures in the window,
# unknown pairs wait BASE, 2*BASE, 4*BASE ... up to MAX seconds after each further failure. The
# window must hold many capped waits (a day: 288 of 300 s), or old failures age out and it relents.
LOGIN_ACCOUNT_DELAY_AFTER = env.int("LOGIN_ACCOUNT_DELAY_AFTER", default=10)
LOGIN_ACCOUNT_FAILURE_WINDOW_S = env.int("LOGIN_ACCOUNT_FAILURE_WINDOW_S", default=86400)
LOGIN_ACCOUNT_DELAY_BASE_S = env.int("LOGIN_ACCOUNT_DELAY_BASE_S", default=1)
LOGIN_ACCOUNT_DELAY_MAX_S = env.int("LOGIN_ACCOUNT_DELAY_MAX_S", default=300)
# Usernames: ASCII [a-z0-9_.-], stored normalised (lower-case); lengths inclusive.
USERNAME_MIN_LENGTH = env.int("USERNAME_MIN_LENGTH", default=3)
USERNAME_MAX_LENGTH = env.int("USERNAME_MAX_LENGTH", default=32)
# POST /contacts, POST /blocks, a new conversation and GET /users/lookup each tie a user id to a
# name: together, at most this many per user per hour (enumeration).
CONTACT_ADDS_PER_USER_PER_HOUR = env.int("CONTACT_ADDS_PER_USER_PER_HOUR", default=120)
# Accounts registered from one client address per hour (POST /auth/register).
REGISTRATIONS_PER_IP_PER_HOUR = env.int("REGISTRATIONS_PER_IP_PER_HOUR", default=20)
# Addresses / CIDRs of our own load balancers and reverse proxies. X-Forwarded-For is read only on
# connections from one of them, right to left, up to the first hop that is not (chatsite/api/request.py).
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
try:
    [ipaddress.ip_network(entry, strict=False) for entry in TRUSTED_PROXIES]
except ValueError as exc:
    raise ImproperlyConfigured(f"TRUSTED_PROXIES: {exc}") from exc
# Who may scrape /metrics and read /health's details (ops/views.py). Addresses / CIDRs of the client
# as chatsite/api/request.py sees it (TRUSTED_PROXIES applies); empty: any address.
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=[])
try:
    [ipaddress.ip_network(entry, strict=False) for entry in METRICS_ALLOWED_IPS]
except ValueError as exc:
    raise ImproperlyConfigured(f"METRICS_ALLOWED_IPS: {exc}") from exc
# When set, /metrics requires "Authorization: Bearer <token>" (and /health's details need it too).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# --- Feature flags (seed 000 "Hotfix Rollback", seed 001 "Feature Flag Rollback") ------------
GROUPS_ENABLED = env.bool("GROUPS_ENABLED", default=True)
STATUS_ENABLED = env.bool("STATUS_ENABLED", default=True)
PRESENCE_ENABLED = env.bool("PRESENCE_ENABLED", default=True)
E2EE_DM_ENABLED = env.bool("E2EE_DM_ENABLED", default=True)

# --- Realtime gateway limits (seed 003 "Performance Tuning", seed 000 SSE) ------------------
MAX_CONNS_PER_IP = env.int("MAX_CONNS_PER_IP", default=50)
MAX_TOTAL_CONNECTIONS = env.int("MAX_TOTAL_CONNECTIONS", default=10000)
MAX_MSGS_PER_10S = env.int("MAX_MSGS_PER_10S", default=200)
MAX_BYTES_PER_10S = env.int("MAX_BYTES_PER_10S", default=1048576)
WS_MAX_FRAME_BYTES = env.int("WS_MAX_FRAME_BYTES", default=256 * 1024)
# The transport's own ceiling (daphne/autobahn, set by chatsite/server.py): a message above it is
# never buffered and the connection is closed 1009. Between WS_MAX_FRAME_BYTES and this the gateway
# answers PAYLOAD_TOO_LARGE and closes 4413, so keep it above WS_MAX_FRAME_BYTES.
WS_MAX_MESSAGE_BYTES = env.int("WS_MAX_MESSAGE_BYTES", default=1024 * 1024)
# The heartbeat is the ping: every WS_PING_INTERVAL_MS the server sends {"type": "heartbeat",
# "relay_lag": ...}; a connection that sends nothing for WS_PING_INTERVAL_MS + WS_PING_TIMEOUT_MS
# is closed as dead (4408).
WS_PING_INTERVAL_MS = env.int("WS_PING_INTERVAL_MS", default=25000)
WS_PING_TIMEOUT_MS = env.int("WS_PING_TIMEOUT_MS", default=20000)
# A connection whose queued events are older than this when they reach it is a slow consumer:
# it is closed (4008) instead of buffering without bound, and resumes from its cursor.
WS_SLOW_CONSUMER_LAG_MS = env.int("WS_SLOW_CONSUMER_LAG_MS", default=10000)
# Frames an SSE response may hold that its client has not read yet; past it the stream is closed
# as a slow consumer (4008). Keep it above DM_MAX_UNACKED_PER_STREAM, which bounds dm's share.
SSE_MAX_QUEUED_FRAMES = env.int("SSE_MAX_QUEUED_FRAMES", default=2000)
WS_ALLOWED_ORIGINS = env.list("WS_ALLOWED_ORIGINS", default=[])
# Live streams (WebSocket or SSE, any feature) one user may hold open across processes; past it
# the oldest is closed (4429). Seed 000 calls it E2EE_DM_MAX_CONCURRENT_STREAMS_PER_USER, which is
# still read as the default, so the runbook's setting keeps working.
REALTIME_MAX_STREAMS_PER_USER = env.int(
    "REALTIME_MAX_STREAMS_PER_USER", default=env.int("E2EE_DM_MAX_CONCURRENT_STREAMS_PER_USER", default=3)
)
# While the relay is down, connected streams poll the database at this interval.
RELAY_POLL_INTERVAL_MS = env.int("RELAY_POLL_INTERVAL_MS", default=2000)
RELAY_HEALTH_CHECK_INTERVAL_MS = env.int("RELAY_HEALTH_CHECK_INTERVAL_MS", default=1000)
# How long a stream waits for Redis to confirm its device's subscription on the device bus
# (chatsite/realtime/device_bus.py) before it counts the relay as failed and polls instead.
DEVICE_BUS_SUBSCRIBE_TIMEOUT_S = env.float("DEVICE_BUS_SUBSCRIBE_TIMEOUT_S", default=2.0)
# A quiet device-bus connection is PINGed this often; one silent for three intervals is replaced
# (and every stream of the process catches up from the database).
DEVICE_BUS_PING_INTERVAL_S = env.float("DEVICE_BUS_PING_INTERVAL_S", default=5.0)

# --- Domain limits (later issues read these; seed 000 quick reference) -----------------------
GROUP_MAX_PARTICIPANTS = env.int("GROUP_MAX_PARTICIPANTS", default=100)
GROUP_MESSAGE_RATE_PER_USER_PER_MIN = env.int("GROUP_MESSAGE_RATE_PER_USER_PER_MIN", default=40)
GROUP_INVITE_TTL_HOURS = env.int("GROUP_INVITE_TTL_HOURS", default=72)
GROUP_INVITE_CREATES_PER_USER_PER_HOUR = env.int("GROUP_INVITE_CREATES_PER_USER_PER_HOUR", default=20)
GROUP_INVITE_REDEEMS_PER_USER_PER_HOUR = env.int("GROUP_INVITE_REDEEMS_PER_USER_PER_HOUR", default=30)
# Largest group message ciphertext, and largest sender-key envelope (bytes).
GROUP_MAX_MESSAGE_BYTES = env.int("GROUP_MAX_MESSAGE_BYTES", default=96 * 1024)
# Messages per page of GET /groups/{id}/messages and of a group.sync replay.
GROUP_FETCH_PAGE_SIZE = env.int("GROUP_FETCH_PAGE_SIZE", default=200)
# A live group frame that overtook an earlier one waits this long for it before the stream reads
# the database instead; at most GROUP_REORDER_MAX_HELD such frames per group and stream.
GROUP_REORDER_WAIT_MS = env.int("GROUP_REORDER_WAIT_MS", default=200)
GROUP_REORDER_MAX_HELD = env.int("GROUP_REORDER_MAX_HELD", default=100)
# Retention (groups.tasks.purge_group_messages, every 10 minutes): group messages older than
# this many days are deleted, in batches of GROUP_PURGE_BATCH_SIZE, at most GROUP_PURGE_MAX_BATCHES
# batches a run.
GROUP_MESSAGE_RETENTION_DAYS = env.int("GROUP_MESSAGE_RETENTION_DAYS", default=30)
GROUP_PURGE_BATCH_SIZE = env.int("GROUP_PURGE_BATCH_SIZE", default=1000)
GROUP_PURGE_MAX_BATCHES = env.int("GROUP_PURGE_MAX_BATCHES", default=100)
STATUS_TTL_HOURS = env.int("STATUS_TTL_HOURS", default=24)
# --- Status (status/, docs/status.md) ---------------------------------------------------------
# Expiry cleanup (status.tasks.cleanup_expired_posts, every 5 minutes): expired posts deleted per
# transaction, and batches one run deletes at most.
STATUS_CLEANUP_BATCH_SIZE = env.int("STATUS_CLEANUP_BATCH_SIZE", default=500)
STATUS_CLEANUP_MAX_BATCHES = env.int("STATUS_CLEANUP_MAX_BATCHES", default=100)
PRESENCE_HEARTBEAT_S = env.int("PRESENCE_HEARTBEAT_S", default=25)

# --- Presence (presence/, docs/presence.md) ----------------------------------------------------
# Liveness is a Redis key per stream with a TTL of 2 x PRESENCE_HEARTBEAT_S; user_presence.
# last_seen_at is written from it in batches at most once per PRESENCE_FLUSH_INTERVAL_S per user
# (presence.tasks.flush_last_seen) and on disconnect.
PRESENCE_FLUSH_INTERVAL_S = env.int("PRESENCE_FLUSH_INTERVAL_S", default=60)
# GET /status/presence?user_ids=... answers at most this many ids (400 VALIDATION_ERROR above).
PRESENCE_MAX_USER_IDS = env.int("PRESENCE_MAX_USER_IDS", default=200)
# Seconds a user stays "online" for contacts after the last stream ends: a reconnect within it
# pushes nothing (no presence.changed on every flap).
PRESENCE_OFFLINE_GRACE_S = env.int("PRESENCE_OFFLINE_GRACE_S", default=10)
# The sweep runs every heartbeat interval, the batch flush every flush interval.
CELERY_BEAT_SCHEDULE["presence-sweep"]["schedule"] = float(PRESENCE_HEARTBEAT_S)
CELERY_BEAT_SCHEDULE["presence-flush"]["schedule"] = float(PRESENCE_FLUSH_INTERVAL_S)
# share_online and share_last_seen take the same values: one enum in the OpenAPI schema.
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {})["PresenceAudienceEnum"] = [
    "everyone",
    "contacts",
    "nobody",
]

# --- Ephemeral rooms (relay-only, seed 003; groups/rooms.py, docs/rooms.md) ------------------
# Seconds a room's Redis keys live without activity (create, join, leave, send refresh them).
ROOM_IDLE_TTL_S = env.int("ROOM_IDLE_TTL_S", default=3600)
# Connections one room may hold at once (a user with two connections in a room counts twice).
ROOM_MAX_MEMBERS = env.int("ROOM_MAX_MEMBERS", default=50)
# Largest `ciphertext` of a room.send (bytes); the per-connection frame budgets apply as well.
ROOM_MAX_MESSAGE_BYTES = env.int("ROOM_MAX_MESSAGE_BYTES", default=64 * 1024)
# Rooms one client address may create per minute (seed 003 "Performance Tuning").
MAX_ROOM_CREATES_PER_IP_PER_MIN = env.int("MAX_ROOM_CREATES_PER_IP_PER_MIN", default=10)

# --- E2EE direct messages (seed 001) -----------------------------------------------------------
E2EE_MAX_DEVICES_PER_USER = env.int("E2EE_MAX_DEVICES_PER_USER", default=10)
E2EE_MAX_PREKEYS_PER_UPLOAD = env.int("E2EE_MAX_PREKEYS_PER_UPLOAD", default=100)
E2EE_MAX_PREKEYS_PER_DEVICE = env.int("E2EE_MAX_PREKEYS_PER_DEVICE", default=1000)
E2EE_SIGNED_PREKEY_MAX_AGE_DAYS = env.int("E2EE_SIGNED_PREKEY_MAX_AGE_DAYS", default=90)
E2EE_OTPK_LOW_WATERMARK = env.int("E2EE_OTPK_LOW_WATERMARK", default=10)
E2EE_OTPK_CRITICAL = env.int("E2EE_OTPK_CRITICAL", default=5)
E2EE_BUNDLE_FETCHES_PER_PAIR_PER_HOUR = env.int("E2EE_BUNDLE_FETCHES_PER_PAIR_PER_HOUR", default=20)
E2EE_IDENTITY_CHANGES_FLAG_PER_DAY = env.int("E2EE_IDENTITY_CHANGES_FLAG_PER_DAY", default=2)
# Coming back on an existing device (POST /e2ee/devices/{id}/challenge, then .../bind): a challenge
# is single-use and lives this many seconds; an account may ask for this many per hour.
E2EE_DEVICE_CHALLENGE_TTL_S = env.int("E2EE_DEVICE_CHALLENGE_TTL_S", default=120)
E2EE_DEVICE_CHALLENGES_PER_USER_PER_HOUR = env.int("E2EE_DEVICE_CHALLENGES_PER_USER_PER_HOUR", default=10)
DM_SEND_RATE_PER_MIN = env.int("DM_SEND_RATE_PER_MIN", default=120)
DM_SEND_RATE_PER_HOUR = env.int("DM_SEND_RATE_PER_HOUR", default=2000)
DM_MAX_MESSAGE_BYTES = env.int("DM_MAX_MESSAGE_BYTES", default=96 * 1024)
# A send carries one ciphertext per device; the body limit leaves room for that many.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=8 * 1024 * 1024)
# A live event that overtakes an earlier one waits this long for it before the stream reads the
# gap from the database instead (concurrent sends publish in a racy order after their commits).
DM_REORDER_WAIT_MS = env.int("DM_REORDER_WAIT_MS", default=500)
# Flow control of a device stream: at most this many messages in flight (sent, not yet
# acknowledged, counted from the position the stream started at); there the stream pauses and
# resumes as acknowledgements (dm.ack or POST /dm/ack) arrive. It is never cut for it.
DM_MAX_UNACKED_PER_STREAM = env.int("DM_MAX_UNACKED_PER_STREAM", default=1000)
DM_FETCH_PAGE_SIZE = env.int("DM_FETCH_PAGE_SIZE", default=200)
DM_ACKED_RETENTION_HOURS = env.int("DM_ACKED_RETENTION_HOURS", default=24)
DM_UNACKED_RETENTION_DAYS = env.int("DM_UNACKED_RETENTION_DAYS", default=30)

# --- Observability ---------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "chatsite.logs.RequestIdFilter"},
        "redact": {"()": "chatsite.logs.RedactSecretsFilter"},
    },
    "formatters": {"json": {"()": "chatsite.logs.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # The access line (chatsite.request_logs) already records every response with its status;
        # django.request's own "Not Found: /x" warnings would log each 4xx twice. 5xx stay (with
        # their traceback).
        "django.request": {"level": "ERROR"},
    },
}
# Python warnings (e.g. a library's UserWarning) become log records ("py.warnings"), so they
# are JSON lines like everything else instead of plain text on stderr.
logging.captureWarnings(True)
# Celery logs through the JSON handler above instead of replacing the root logger's handlers
# with its plain-text format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")

# --- Production hardening (check --deploy clean with DJANGO_DEBUG=false) -----------------------
# A load balancer terminates TLS and says so in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Probes arrive over plain HTTP from inside the network; ops.middleware.ProbeMiddleware
    # answers them before the redirect and host checks.
    SECURE_REDIRECT_EXEMPT = [r"^health", r"^ready$", r"^live$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
CSRF_FAILURE_VIEW = "chatsite.api.errors.csrf_failure"  # the JSON envelope outside /admin/
X_FRAME_OPTIONS = "DENY"

logging.getLogger(__name__).debug("settings loaded")

# --- Beat jobs (ops/jobs.py, docs/operations.md "Beat jobs") -----------------------------------
# Schedules live in code (CELERY_BEAT_SCHEDULE), reviewed and tested with the tasks they name.
# Every batched job stops starting new batches after this many seconds; the next run continues.
JOB_TIME_BUDGET_S = env.float("JOB_TIME_BUDGET_S", default=30.0)
# Celery's soft time limit of every beat task (worker prefork pool only): a last resort above the
# budget for a single statement that hangs.
JOB_SOFT_TIME_LIMIT_S = env.int("JOB_SOFT_TIME_LIMIT_S", default=120)
# dm.tasks.purge_deliveries: rows deleted per transaction, batches per run at most.
DM_PURGE_BATCH_SIZE = env.int("DM_PURGE_BATCH_SIZE", default=1000)
DM_PURGE_MAX_BATCHES = env.int("DM_PURGE_MAX_BATCHES", default=100)
# groups.tasks.purge_invites: invites expired (or used up, by their last redemption) more than
# this many hours ago are deleted with their redemptions, GROUP_PURGE_BATCH_SIZE per transaction.
GROUP_INVITE_CLEANUP_GRACE_HOURS = env.int("GROUP_INVITE_CLEANUP_GRACE_HOURS", default=24)
# chatsite.accounts.tasks.purge_security_events: audit rows (security_events) kept this long.
SECURITY_EVENT_RETENTION_DAYS = env.int("SECURITY_EVENT_RETENTION_DAYS", default=365)
SECURITY_EVENT_PURGE_BATCH_SIZE = env.int("SECURITY_EVENT_PURGE_BATCH_SIZE", default=1000)
# dm.tasks.remind_low_prekeys: an active device with fewer one-time prekeys than this gets a
# `keys.low` event, at most once per E2EE_PREKEY_REMINDER_INTERVAL_S. MAX_DEVICES: devices
# examined per run at most (reminded or skipped as already reminded); BATCH_SIZE: devices per
# "already reminded" MGET.
E2EE_PREKEY_REMINDER_BELOW = env.int("E2EE_PREKEY_REMINDER_BELOW", default=E2EE_OTPK_LOW_WATERMARK)
E2EE_PREKEY_REMINDER_INTERVAL_S = env.int("E2EE_PREKEY_REMINDER_INTERVAL_S", default=6 * 3600)
E2EE_PREKEY_REMINDER_MAX_DEVICES = env.int("E2EE_PREKEY_REMINDER_MAX_DEVICES", default=5000)
E2EE_PREKEY_REMINDER_BATCH_SIZE = env.int("E2EE_PREKEY_REMINDER_BATCH_SIZE", default=500)
# groups.tasks.sweep_rooms: Redis keys examined per run at most (every key SCAN walks counts,
# room:* or not), walked ROOM_SWEEP_SCAN_COUNT (SCAN's COUNT) at a time.
ROOM_SWEEP_MAX_KEYS = env.int("ROOM_SWEEP_MAX_KEYS", default=100000)
ROOM_SWEEP_SCAN_COUNT = env.int("ROOM_SWEEP_SCAN_COUNT", default=500)
CELERY_BEAT_SCHEDULE.update(
    {
        "groups-purge-invites": {"task": "groups.tasks.purge_invites", "schedule": 3600.0},
        "groups-sweep-rooms": {"task": "groups.tasks.sweep_rooms", "schedule": 3600.0},
        "accounts-purge-security-events": {
            "task": "chatsite.accounts.tasks.purge_security_events",
            "schedule": 86400.0,
        },
        "dm-remind-low-prekeys": {"task": "dm.tasks.remind_low_prekeys", "schedule": 3600.0},
    }
)

# --- Remediations and reports (ops/remediations, ops/reports.py; docs/operations.md "Remediations")
# `rl:*` keys per SCAN page and per UNLINK when resetting or flushing rate-limit windows.
RATE_LIMIT_FLUSH_BATCH = env.int("RATE_LIMIT_FLUSH_BATCH", default=500)
# Orphaned rows deleted per statement by `clear_orphans` (all batches in one transaction).
OPS_ORPHAN_DELETE_BATCH = env.int("OPS_ORPHAN_DELETE_BATCH", default=1000)
# Each live stream's record in Redis (rt:conn:<channel>: user, transport, IP, user agent) for the
# connection-storm report expires this long after its last heartbeat; it must be above
# WS_PING_INTERVAL_MS / 1000 (system check realtime.E001), so a live stream's record never lapses
# and a dead process's go soon.
REALTIME_CONNECTION_RECORD_TTL_S = env.int("REALTIME_CONNECTION_RECORD_TTL_S", default=90)
# User agents are recorded cut to this many characters (bounded keys; the report groups by it).
REALTIME_USER_AGENT_MAX_CHARS = env.int("REALTIME_USER_AGENT_MAX_CHARS", default=200)
# `connections_report` reads at most this many records (the staff dashboard reads
# OPS_DASHBOARD_MAX_CONNECTION_RECORDS), this many keys per SCAN page and per HGETALL pipeline.
REALTIME_CONNECTION_SNAPSHOT_MAX_RECORDS = env.int("REALTIME_CONNECTION_SNAPSHOT_MAX_RECORDS", default=100000)
REALTIME_CONNECTION_SCAN_BATCH = env.int("REALTIME_CONNECTION_SCAN_BATCH", default=1000)
# Devices `low_prekeys` lists at most (emptiest first).
OPS_LOW_PREKEYS_REPORT_LIMIT = env.int("OPS_LOW_PREKEYS_REPORT_LIMIT", default=500)

# --- Integrity checks (ops/integrity, docs/operations.md "Integrity checks") -------------------
# Celery beat runs every check this often (entry "ops-integrity-checks"); results are stored in
# ops_integrity_results and exported as integrity_violations{check}.
INTEGRITY_CHECK_INTERVAL_S = env.int("INTEGRITY_CHECK_INTERVAL_S", default=300)
# Each check's query is cut off after this many milliseconds (lock waits included) and recorded
# as an error; the other checks still run. The slowest checks are full passes (2.6 s for 2M
# direct messages, docs/operations.md): a run takes at most 20 x this, inside the interval.
INTEGRITY_STATEMENT_TIMEOUT_MS = env.int("INTEGRITY_STATEMENT_TIMEOUT_MS", default=10000)
# Offending ids listed per check by `integrity_check --json` and the staff dashboard.
INTEGRITY_SAMPLE_SIZE = env.int("INTEGRITY_SAMPLE_SIZE", default=20)
# Thresholds (the OTPK, signed-prekey and identity-change ones are the E2EE_* settings above):
# a DM device copy unacknowledged this long; a sender-key envelope unacknowledged this long
# (seed 000: 5 minutes); a user online with last_seen_at this old; a status post expired this long
# ago and still stored (two runs of the 5-minute cleanup).
INTEGRITY_UNDELIVERED_AFTER_S = env.int("INTEGRITY_UNDELIVERED_AFTER_S", default=300)
INTEGRITY_SENDER_KEY_UNACKED_AFTER_S = env.int("INTEGRITY_SENDER_KEY_UNACKED_AFTER_S", default=300)
INTEGRITY_PRESENCE_STUCK_AFTER_S = env.int("INTEGRITY_PRESENCE_STUCK_AFTER_S", default=300)
INTEGRITY_STATUS_EXPIRED_GRACE_S = env.int("INTEGRITY_STATUS_EXPIRED_GRACE_S", default=600)
CELERY_BEAT_SCHEDULE["ops-integrity-checks"] = {
    "task": "ops.tasks.run_integrity_checks",
    "schedule": float(INTEGRITY_CHECK_INTERVAL_S),
}

# --- Staff dashboard (ops/dashboard, docs/operations.md "Admin console for support staff") -----
# Security events (failed log-ins, identity key changes, bans) the dashboard lists, newest first.
OPS_DASHBOARD_SECURITY_EVENTS = env.int("OPS_DASHBOARD_SECURITY_EVENTS", default=20)
# Live connection records (Redis) read at most per dashboard load; past it the count shows "N+".
OPS_DASHBOARD_MAX_CONNECTION_RECORDS = env.int("OPS_DASHBOARD_MAX_CONNECTION_RECORDS", default=10000)

# --- Runtime feature flags and circuit breakers (chatsite/api/flags.py, chatsite/api/circuit.py;
# docs/operations.md "Feature flags at runtime", "Circuit breaker") ---------------------------
# The data-corruption runbook's switch (seed 004): off refuses every message write with 503
# MESSAGE_WRITE_DISABLED while reads keep working. The runbook's FEATURE_FLAG_MESSAGE_WRITE=disabled
# is still read as the default.
MESSAGE_WRITE_ENABLED = env.bool(
    "MESSAGE_WRITE_ENABLED",
    default=env.str("FEATURE_FLAG_MESSAGE_WRITE", default="enabled").strip().lower()
    not in ("disabled", "off", "false", "0"),
)
# Every process re-reads the runtime overrides (feature_flags) and breaker resets this often.
FEATURE_FLAG_REFRESH_S = env.float("FEATURE_FLAG_REFRESH_S", default=2.0)
# Consecutive connection failures that open a breaker (seed 004: "failed 10 consecutive times"),
# and seconds it stays open before letting one trial call through (seed 004: about 60 s).
CIRCUIT_BREAKER_FAILURES = env.int("CIRCUIT_BREAKER_FAILURES", default=10)
CIRCUIT_BREAKER_RESET_S = env.float("CIRCUIT_BREAKER_RESET_S", default=60.0)
