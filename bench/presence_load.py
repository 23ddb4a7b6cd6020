"""Presence under load: many idle clients heartbeating on daphne processes (issue 16, "Performance").

    .venv/bin/python bench/presence_load.py [--clients 5000] [--workers 2] [--heartbeat-s 5]
        [--steady 30] [--subjects 40] [--watchers 10] [--flappers 20]

Creates a scratch database (`--db`, default chatsite_bench_presence) and flushes one Redis
database (`--redis`, default db 14). Accounts and sessions are inserted in bulk straight into the
database (`bulk_create`; each session's bearer token is made and hashed as
chatsite.accounts.services.session_login does): 5,000 log-ins through the API would only measure
the password hasher. Clients have no E2EE device (a device-less stream, as a client before it
registers one): the device queue's share of the stream is not part of this bench. Each of
`--subjects` users is in the contact list of `--watchers` other users (contacts.owner = watcher),
with default privacy (everyone), so its transitions are pushed to those watchers.

Time is compressed by 25 / `--heartbeat-s`: PRESENCE_HEARTBEAT_S and WS_PING_INTERVAL_MS (25 s
in production) become `--heartbeat-s`, PRESENCE_OFFLINE_GRACE_S (10 s) and
PRESENCE_FLUSH_INTERVAL_S (60 s) shrink by the same factor. WS_PING_TIMEOUT_MS stays 20 s.
`--heartbeat-s 25` is the production interval: on the 2-core box of docs/performance.md the
compressed default overloads the servers well before 5,000 clients (see "Presence and status").

Every client connects to /ws with `Authorization: Bearer` (connections spread over the
processes), answers daphne's protocol pings (the websockets library does) and otherwise only
listens, as an idle app does. The load generator holds every socket in one asyncio process and
raises its own open-file limit (RLIMIT_NOFILE soft -> hard; the servers inherit it).

Measured:
- heartbeats/s handled: the servers' `presence_heartbeats_total` (each process's /metrics) over a
  steady window, against the expected clients / heartbeat;
- PostgreSQL writes per heartbeat in that window: rows inserted/updated/deleted per table
  (pg_stat_user_tables, after PostgreSQL's 10 s stats flush), commits (pg_stat_database
  xact_commit: reads count too, each autocommit SELECT is one) and WAL bytes; the last_seen_at
  flush (presence.services.flush_last_seen, the beat task's body) and the crash sweep
  (sweep_stale) run once after the window and are counted separately;
- presence events per transition: `--subjects` users disconnect and stay away past the grace
  (each watcher should get exactly one `presence.changed` offline per subject, about the grace
  after the close), `--flappers` (other subjects) disconnect and reconnect within the grace
  (nothing should be pushed), then the subjects come back (one `online` each per watcher);
- memory per connection: VmRSS of the daphne processes before and after connecting, / clients;
- CPU seconds per 1,000 heartbeats over the window (servers, PostgreSQL, Redis, load generator).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dm_throughput import pct, server_env  # noqa: E402  (after the path insert)
from bench.dm_throughput import start_servers as start_daphnes  # noqa: E402

PRODUCTION_HEARTBEAT_S = 25
PRODUCTION_GRACE_S = 10
PRODUCTION_FLUSH_S = 60


# --- Setup ----------------------------------------------------------------------------------------


def setup_database(base_dsn: str, name: str) -> str:
    import psycopg

    with psycopg.connect(f"{base_dsn}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return f"{base_dsn}/{name}"


def raise_fd_limit() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def setup_users(clients: int, subjects: int, watchers: int, flappers: int) -> dict:
    """Users and sessions in bulk, and the contact lists: user i < subjects + flappers is watched
    by `watchers` users taken from the rest (never a subject or flapper themselves)."""
    import django

    django.setup()
    from datetime import timedelta

    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    from chatsite.accounts.models import Contact, Session, User
    from chatsite.accounts.tokens import hash_token, new_token

    call_command("migrate", verbosity=0)
    now = timezone.now()
    users = User.objects.bulk_create(
        [User(username=f"presence{i}", password="!bench-no-login") for i in range(clients)], batch_size=1000
    )
    tokens = [new_token() for _ in users]
    Session.objects.bulk_create(
        [
            Session(
                user=u,
                token_hash=hash_token(t),
                token_prefix=t[:8],
                created_at=now,
                expires_at=now + timedelta(hours=settings.AUTH_TOKEN_TTL_HOURS),
                last_used_at=now,
            )
            for u, t in zip(users, tokens, strict=True)
        ],
        batch_size=1000,
    )
    watched = subjects + flappers
    pool = list(range(watched, clients))
    if watchers > len(pool):
        raise SystemExit("--watchers is larger than the clients that are not subjects")
    watchers_of: dict[int, list[int]] = {}
    contacts = []
    for s in range(watched):
        chosen = [pool[(s * watchers + k) % len(pool)] for k in range(watchers)]
        watchers_of[s] = chosen
        contacts += [Contact(owner=users[w], contact=users[s]) for w in chosen]
    Contact.objects.bulk_create(contacts, batch_size=1000)
    return {
        "clients": [{"user_id": u.pk, "token": t} for u, t in zip(users, tokens, strict=True)],
        "watchers_of": watchers_of,  # index of a watched user -> indexes of its watchers
        "contacts": len(contacts),
    }


# --- Measuring ------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def heartbeats_handled(ports: list[int]) -> dict[str, float]:
    """presence_heartbeats_total by store, summed over the processes (each has its own registry)."""
    out: dict[str, float] = {}
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith("presence_heartbeats_total{"):
                    labels, value = line.rsplit(" ", 1)
                    store = labels.split('store="', 1)[1].split('"', 1)[0]
                    out[store] = out.get(store, 0.0) + float(value)
    return out


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_by_pid(server_pids: list[int], db: str) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of each process that belongs to the run: the servers, PostgreSQL
    backends connected to the scratch database, Redis (shared with whatever else uses it) and
    this load generator. Compared per pid, so a backend that exits in between is left out
    rather than making a sum go negative."""
    out: dict[int, tuple[str, float]] = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / _TICKS
        if pid in server_pids:
            out[pid] = ("servers", seconds)
        elif pid == me:
            out[pid] = ("load_generator", seconds)
        elif comm == "postgres" and f" {db} " in cmdline:
            out[pid] = ("postgres", seconds)
        elif comm.startswith("redis-server"):
            out[pid] = ("redis", seconds)
    return out


def box_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole box (/proc/stat): the box is shared, so say how busy."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def cpu_delta(before: dict, after: dict) -> dict[str, float]:
    out = {"servers": 0.0, "postgres": 0.0, "redis": 0.0, "load_generator": 0.0}
    for pid, (group, seconds) in after.items():
        if pid in before:
            out[group] += seconds - before[pid][1]
    return out


def pg_counters(dsn: str) -> dict:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        tables = {
            name: {"ins": ins, "upd": upd, "del": dele}
            for name, ins, upd, dele in conn.execute(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
            ).fetchall()
        }
        commits, rollbacks = conn.execute(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        online = conn.execute("SELECT count(*) FROM user_presence WHERE device_online").fetchone()[0]
    return {"tables": tables, "commits": commits, "rollbacks": rollbacks, "online": online}


def pg_delta(before: dict, after: dict) -> dict:
    tables = {}
    for name, a in after["tables"].items():
        b = before["tables"].get(name, {"ins": 0, "upd": 0, "del": 0})
        d = {k: a[k] - b[k] for k in a if a[k] != b[k]}
        if d:
            tables[name] = d
    return {
        "rows_written_by_table": tables,
        "rows_written": sum(sum(d.values()) for d in tables.values()),
        "user_presence_rows_written": sum(tables.get("user_presence", {}).values()),
        "commits": after["commits"] - before["commits"],
        "users_online_before_after": [before["online"], after["online"]],
    }


# --- Load -----------------------------------------------------------------------------------------


class Client:
    def __init__(self, index: int, user_id: int, token: str):
        self.index = index
        self.user_id = user_id
        self.token = token
        self.ws = None
        self.task: asyncio.Task | None = None
        self.hello = asyncio.Event()
        self.frames: dict[str, int] = {}
        self.presence: list[tuple[float, int, bool]] = []  # (arrival, user_id, online)
        self.problems: list[str] = []
        self.closed_by_us = False


async def run(args, setup: dict, ports: list[int], dsn: str, server_pids: list[int]) -> dict:
    from websockets.asyncio.client import connect

    clients = [Client(i, c["user_id"], c["token"]) for i, c in enumerate(setup["clients"])]

    async def reader(c: Client) -> None:
        try:
            async for raw in c.ws:
                frame = json.loads(raw)
                kind = frame["type"]
                c.frames[kind] = c.frames.get(kind, 0) + 1
                if kind == "hello":
                    c.hello.set()
                elif kind == "presence.changed":
                    c.presence.append((time.monotonic(), frame["user_id"], frame["online"]))
                elif kind == "closing" and not c.closed_by_us:
                    c.problems.append(f"closing {frame.get('code')} {frame.get('reason')}")
        except Exception as exc:
            if not c.closed_by_us:
                c.problems.append(repr(exc))

    async def open_stream(c: Client) -> None:
        c.closed_by_us = False
        c.hello = asyncio.Event()
        c.ws = await connect(
            f"ws://127.0.0.1:{ports[c.index % len(ports)]}/ws",
            additional_headers={"Authorization": f"Bearer {c.token}"},
            max_queue=None,
            open_timeout=120,
            ping_interval=None,  # the server pings; the library answers
            close_timeout=5,
        )
        c.task = asyncio.create_task(reader(c))
        await asyncio.wait_for(c.hello.wait(), 120)

    reconnect_failures: list[str] = []

    async def reopen(c: Client) -> bool:
        """A reconnect under load: daphne drops a handshake the application has not accepted
        within its handshake timeout (5 s), so retry, and count the failures."""
        for _ in range(3):
            try:
                await open_stream(c)
                return True
            except Exception as exc:
                reconnect_failures.append(repr(exc))
                await asyncio.sleep(1)
        return False

    async def close_stream(c: Client) -> None:
        c.closed_by_us = True
        await c.ws.close()
        if c.task:
            await asyncio.gather(c.task, return_exceptions=True)

    lags: list[float] = []
    stop_probe = asyncio.Event()

    async def lag_probe() -> None:
        while not stop_probe.is_set():
            t = time.monotonic()
            await asyncio.sleep(0.05)
            lags.append(time.monotonic() - t - 0.05)

    probe = asyncio.create_task(lag_probe())
    rss_before = {pid: rss_kib(pid) for pid in server_pids}
    loadgen_rss_before = rss_kib(os.getpid())

    # Connect everyone, `--connect-concurrency` handshakes at a time.
    sem = asyncio.Semaphore(args.connect_concurrency)
    failures: list[str] = []

    async def connect_one(c: Client) -> None:
        async with sem:
            try:
                await open_stream(c)
            except Exception as exc:
                failures.append(repr(exc))

    t0 = time.monotonic()
    await asyncio.gather(*(connect_one(c) for c in clients))
    connect_s = time.monotonic() - t0
    connected = sum(1 for c in clients if c.hello.is_set())
    print(json.dumps({"connected": connected, "seconds": round(connect_s, 1)}), file=sys.stderr, flush=True)

    # Settle: every stream's on_open writes done (device_online for everyone), then a full
    # heartbeat cycle and PostgreSQL's counters of the connect writes flushed (an idle backend
    # reports within 10 s).
    t_settle = time.monotonic()
    online_now = 0
    while time.monotonic() - t_settle < args.settle_timeout:
        online_now = (await asyncio.to_thread(pg_counters, dsn))["online"]
        if online_now >= connected:
            break
        await asyncio.sleep(1)
    online_settle_s = time.monotonic() - t_settle
    print(
        json.dumps({"online_in_db": online_now, "after_seconds": round(online_settle_s, 1)}),
        file=sys.stderr,
        flush=True,
    )
    await asyncio.sleep(max(12.0, 2 * args.heartbeat_s))
    rss_after = {pid: rss_kib(pid) for pid in server_pids}
    loadgen_rss_after = rss_kib(os.getpid())

    # --- Steady window ---------------------------------------------------------------------------
    hb_before = await asyncio.to_thread(heartbeats_handled, ports)
    pg_before = await asyncio.to_thread(pg_counters, dsn)
    cpu_before = cpu_by_pid(server_pids, args.db)
    box_before = box_cpu()
    frames_before = sum(c.frames.get("heartbeat", 0) for c in clients)
    lags.clear()
    t_window = time.monotonic()
    await asyncio.sleep(args.steady)
    hb_after = await asyncio.to_thread(heartbeats_handled, ports)
    cpu = cpu_delta(cpu_before, cpu_by_pid(server_pids, args.db))
    box_after = box_cpu()
    window = time.monotonic() - t_window
    frames_after = sum(c.frames.get("heartbeat", 0) for c in clients)
    loop_lag = {"p50_ms": pct(lags, 0.5), "p99_ms": pct(lags, 0.99)}
    # PostgreSQL reports a busy backend's counters at most once a second and an idle one within
    # 10 s: wait, then read. Heartbeats go on meanwhile, so count them up to the same moment.
    await asyncio.sleep(11)
    pg_after = await asyncio.to_thread(pg_counters, dsn)
    hb_late = await asyncio.to_thread(heartbeats_handled, ports)
    heartbeats = sum(hb_after.values()) - sum(hb_before.values())
    heartbeats_to_pg_read = sum(hb_late.values()) - sum(hb_before.values())
    db = pg_delta(pg_before, pg_after)
    steady = {
        "window_seconds": round(window, 1),
        "heartbeats_handled": int(heartbeats),
        "heartbeats_per_s": round(heartbeats / window, 1),
        "heartbeats_per_s_expected": round(connected / args.heartbeat_s, 1),
        "heartbeats_by_store": {k: int(hb_after.get(k, 0) - hb_before.get(k, 0)) for k in hb_after},
        "heartbeat_frames_received_per_s": round((frames_after - frames_before) / window, 1),
        "postgres_between_snapshots": {
            **db,
            "heartbeats": int(heartbeats_to_pg_read),
            "user_presence_rows_written_per_heartbeat": round(
                db["user_presence_rows_written"] / max(heartbeats_to_pg_read, 1), 4
            ),
            "rows_written_per_heartbeat": round(db["rows_written"] / max(heartbeats_to_pg_read, 1), 4),
            "commits_per_heartbeat": round(db["commits"] / max(heartbeats_to_pg_read, 1), 3),
        },
        "cpu_seconds_per_1000_heartbeats": {
            k: round(v / max(heartbeats, 1) * 1000, 3) for k, v in cpu.items()
        },
        "cpu_share_of_box": {k: round(v / window / (os.cpu_count() or 1), 3) for k, v in cpu.items()},
        "box_busy_share_all_processes": round(
            (box_after[0] - box_before[0]) / max(box_after[1] - box_before[1], 1), 3
        ),
        # An idle connection costs the server CPU whether or not its heartbeat is due: every
        # stream ticks about once a second (chatsite/realtime/stream.py run_ticks).
        "server_cpu_ms_per_connection_per_s": round(cpu["servers"] / window / max(connected, 1) * 1000, 4),
        "loadgen_loop_lag": loop_lag,
    }
    print(json.dumps({"steady": steady}), file=sys.stderr, flush=True)

    # --- The batch flush and the sweep, counted apart from the heartbeats --------------------------
    from presence import services as presence_services

    pg0 = await asyncio.to_thread(pg_counters, dsn)
    t = time.monotonic()
    flushed = await asyncio.to_thread(presence_services.flush_last_seen)
    flush_ms = (time.monotonic() - t) * 1000
    t = time.monotonic()
    stale = await asyncio.to_thread(presence_services.sweep_stale)
    sweep_ms = (time.monotonic() - t) * 1000
    await asyncio.sleep(11)
    pg1 = await asyncio.to_thread(pg_counters, dsn)
    flush_db = pg_delta(pg0, pg1)
    flush = {
        "rows_flushed": flushed,
        "flush_ms": round(flush_ms, 1),
        "user_presence_rows_written": flush_db["user_presence_rows_written"],
        "sweep_stale_users_found": len(stale),
        "sweep_ms": round(sweep_ms, 1),
        "note": "both in the bench process (the beat tasks' bodies); the DB delta also holds the "
        "servers' heartbeat reads of those 11 s",
        "flush_rows_per_heartbeat_at_production_intervals": round(
            PRODUCTION_HEARTBEAT_S / PRODUCTION_FLUSH_S, 3
        ),
    }
    print(json.dumps({"flush": flush}), file=sys.stderr, flush=True)

    # --- Transitions -----------------------------------------------------------------------------
    watchers_of: dict[int, list[int]] = setup["watchers_of"]
    subjects = [clients[i] for i in range(args.subjects)]
    flappers = [clients[i] for i in range(args.subjects, args.subjects + args.flappers)]
    grace = args.grace_s

    def count_frames(since: float, about: list[Client], online: bool) -> dict:
        """For each watched user, how many matching frames each of its watchers got since `since`."""
        counts: list[int] = []
        latencies: list[float] = []
        stray = 0
        about_ids = {c.user_id for c in about}
        for c in about:
            for w in watchers_of[c.index]:
                got = [
                    f for f in clients[w].presence if f[0] >= since and f[1] == c.user_id and f[2] is online
                ]
                counts.append(len(got))
                latencies += [f[0] - since for f in got[:1]]
        watcher_set = {w for c in about for w in watchers_of[c.index]}
        for i, c in enumerate(clients):
            for f in c.presence:
                if f[0] >= since and f[1] in about_ids and i not in watcher_set:
                    stray += 1
        return {
            "transitions": len(about),
            "watchers": len(counts),
            "frames": sum(counts),
            "watchers_with_exactly_one": sum(1 for n in counts if n == 1),
            "watchers_with_none": sum(1 for n in counts if n == 0),
            "watchers_with_more": sum(1 for n in counts if n > 1),
            "frames_per_transition": round(sum(counts) / max(len(about), 1), 2),
            "frames_to_non_watchers": stray,
            "first_frame_after_close_p50_ms": pct(latencies, 0.5),
            "first_frame_after_close_max_ms": pct(latencies, 1.0),
        }

    t_off = time.monotonic()
    await asyncio.gather(*(close_stream(c) for c in subjects + flappers))
    await asyncio.sleep(grace / 4)
    await asyncio.gather(*(reopen(c) for c in flappers))
    await asyncio.sleep(grace + 2 * args.heartbeat_s + 3)
    offline = count_frames(t_off, subjects, online=False)
    flap_frames = sum(
        1 for c in clients for f in c.presence if f[0] >= t_off and f[1] in {x.user_id for x in flappers}
    )
    t_on = time.monotonic()
    await asyncio.gather(*(reopen(c) for c in subjects))
    await asyncio.sleep(3 + args.heartbeat_s)
    online = count_frames(t_on, subjects, online=True)
    transitions = {
        "offline": offline,
        "online_again": online,
        "flappers": len(flappers),
        "flapper_frames_pushed": flap_frames,
        "watchers_per_subject": args.watchers,
        "grace_s": grace,
        "reconnect_attempts_failed": len(reconnect_failures),
        "reconnect_failure_examples": reconnect_failures[:3],
    }
    print(json.dumps({"transitions": transitions}), file=sys.stderr, flush=True)

    stop_probe.set()
    await probe
    problems = [p for c in clients for p in c.problems]
    await asyncio.gather(*(close_stream(c) for c in clients if c.ws is not None), return_exceptions=True)
    frames: dict[str, int] = {}
    for c in clients:
        for k, v in c.frames.items():
            frames[k] = frames.get(k, 0) + v
    rss_growth = sum(rss_after.values()) - sum(rss_before.values())
    return {
        "connected": connected,
        "connect_failures": len(failures),
        "connect_failure_examples": failures[:3],
        "connect_seconds": round(connect_s, 1),
        "connects_per_s": round(connected / connect_s, 1),
        "seconds_until_all_online_in_db": round(online_settle_s, 1),
        "online_in_db_after_settle": online_now,
        "memory": {
            "server_rss_kib_before": sum(rss_before.values()),
            "server_rss_kib_after": sum(rss_after.values()),
            "server_kib_per_connection": round(rss_growth / max(connected, 1), 1),
            "per_process_kib_before_after": [[rss_before[p], rss_after[p]] for p in server_pids],
            "loadgen_kib_per_connection": round(
                (loadgen_rss_after - loadgen_rss_before) / max(connected, 1), 1
            ),
        },
        "steady": steady,
        "flush_and_sweep": flush,
        "transitions": transitions,
        "connection_problems": len(problems),
        "connection_problem_examples": problems[:5],
        "frames_received": frames,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2, help="daphne processes")
    parser.add_argument(
        "--heartbeat-s",
        type=int,
        default=5,
        help="compressed heartbeat (production: 25 s); scales grace and flush",
    )
    parser.add_argument("--steady", type=float, default=30, help="seconds of the steady window")
    parser.add_argument("--subjects", type=int, default=40, help="users that go offline and come back")
    parser.add_argument("--flappers", type=int, default=20, help="users that reconnect within the grace")
    parser.add_argument("--watchers", type=int, default=10, help="contacts watching each subject / flapper")
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument(
        "--settle-timeout", type=float, default=90, help="max seconds to wait for everyone online in the DB"
    )
    parser.add_argument("--port-base", type=int, default=8760)
    parser.add_argument(
        "--db", default="chatsite_bench_presence", help="scratch database (dropped and created)"
    )
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432"))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/14"))
    args = parser.parse_args()

    factor = PRODUCTION_HEARTBEAT_S / args.heartbeat_s
    args.grace_s = max(1, round(PRODUCTION_GRACE_S / factor))
    flush_s = max(1, round(PRODUCTION_FLUSH_S / factor))
    fd_limit = raise_fd_limit()
    dsn = setup_database(args.pg, args.db)
    env = server_env(
        dsn,
        args.redis,
        MAX_CONNS_PER_IP="100000",
        PRESENCE_HEARTBEAT_S=str(args.heartbeat_s),
        WS_PING_INTERVAL_MS=str(args.heartbeat_s * 1000),
        PRESENCE_OFFLINE_GRACE_S=str(args.grace_s),
        PRESENCE_FLUSH_INTERVAL_S=str(flush_s),
    )
    os.environ.update(env)
    import redis

    redis.Redis.from_url(args.redis).flushdb()
    t = time.monotonic()
    setup = setup_users(args.clients, args.subjects, args.watchers, args.flappers)
    setup_s = time.monotonic() - t
    for port in range(args.port_base, args.port_base + args.workers):
        # start_servers waits for /live on these ports: a leftover server would answer it.
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(f"port {port} is already in use (a leftover server?)")
    servers = start_daphnes(args.workers, env, "daphne", port_base=args.port_base)
    try:
        ports = [p for _, p in servers]
        load = asyncio.run(run(args, setup, ports, dsn, [proc.pid for proc, _ in servers]))
    finally:
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    result = {
        "clients": args.clients,
        "workers": args.workers,
        "heartbeat_s": args.heartbeat_s,
        "time_compression": round(factor, 2),
        "offline_grace_s": args.grace_s,
        "flush_interval_s": flush_s,
        "fd_limit": list(fd_limit),
        "setup_seconds": round(setup_s, 1),
        "contacts": setup["contacts"],
        **load,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
