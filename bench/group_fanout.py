"""Group fan-out against the production shape: daphne processes, PostgreSQL, Redis.

    .venv/bin/python bench/group_fanout.py [--members 100] [--senders 5] [--rates 10,25,50,100]
        [--seconds 10] [--workers 2]

Creates a scratch database (chatsite_bench_groups) and uses Redis db 13. Registers `--members`
users, every other one with two devices (real Ed25519 signatures via vodozemac, as
bench/dm_throughput.py), builds one group of all of them through the services (group_create,
_admit), and has `--senders` members distribute a sender key for the group's epoch
(sender_key_distribute: one opaque envelope per other member device). Starts `--workers` daphne
processes and connects every device over WebSocket (connections spread over the processes).

For each target rate the senders post `group.send` frames open-loop (on a fixed schedule, not
waiting for `group.sent`) for `--seconds`. Every device's connection records the arrival time of
every `group.message`. Per message: latency to the last device = last arrival - send time (every
member device but the sender's must receive it). Checked: nothing lost (every other device gets
every message), no duplicates (a seq twice on one device). Rows written per message come from
PostgreSQL's own counters (pg_stat_user_tables, inserts + updates + deletes) and from row counts of
group_messages and group_delivery. In the same run it measures PostgreSQL's single-row INSERT and
Redis' PUBLISH rates (bench/dm_throughput.py's functions): the ceilings beside our figures.
Receivers acknowledge (`group.ack`) every `--ack-every` messages, as a client does.

The load generator is one asyncio process holding every connection; its event-loop lag is
printed (`loadgen_loop_lag_p99_ms`): when it is high, latencies include the generator's own delay.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dm_throughput import (  # noqa: E402  (after the path insert)
    b64,
    cpu_by_group,
    pct,
    postgres_insert_rate,
    redis_publish_rate,
    register_device,
    server_env,
)
from bench.dm_throughput import start_servers as start_daphnes  # noqa: E402

BENCH_DB = "chatsite_bench_groups"
PORT_BASE = 8720
TABLES = ("group_messages", "group_delivery", "group_sender_key_envelopes", "groups")


# --- Setup ----------------------------------------------------------------------------------------


def setup_database(base_dsn: str) -> str:
    import psycopg

    with psycopg.connect(f"{base_dsn}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    return f"{base_dsn}/{BENCH_DB}"


def setup_group(members: int, senders: int, two_device_share: float) -> dict:
    """Users, sessions and devices, one group of all of them, and the senders' sender keys, all
    through the real services. Returns the devices (token, ids) and the group."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction
    from django.test.utils import override_settings

    from chatsite.accounts import services as accounts
    from groups.models import Group
    from groups.selectors.members import member_devices
    from groups.services.members import _admit, group_create
    from groups.services.sender_keys import sender_key_distribute

    call_command("migrate", verbosity=0)
    # Setup only: hundreds of logins with the production hasher would take minutes. The servers
    # never check these passwords (clients come with the session tokens made here).
    fast_hash = override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
    fast_hash.enable()

    def device(user_name: str, n: int) -> dict:
        session, token = accounts.session_login(username=user_name, password="bench-password-123456")
        registered = register_device(session, f"{user_name}-device{n}")
        return {"token": token, "device_id": str(registered.pk)}

    users = []
    for i in range(members):
        name = f"member{i}"
        user = accounts.user_register(username=name, password="bench-password-123456")
        # Spread evenly: member i has two devices when the running share says so.
        two = int((i + 1) * two_device_share) > int(i * two_device_share)
        devices = [device(name, n) for n in range(2 if two else 1)]
        users.append({"user_id": user.pk, "devices": devices})
    fast_hash.disable()

    with transaction.atomic():
        group = group_create(user_id=users[0]["user_id"], title="bench")
        for u in users[1:]:
            _admit(group_id=group.pk, user_id=u["user_id"])
    group = Group.objects.get(pk=group.pk)
    everyone = [str(d) for _u, d in member_devices(group.pk)]
    # Senders: the first device of `senders` members spread over the list (both kinds of member).
    step = max(1, members // senders)
    sender_devices = []
    for i in range(0, step * senders, step):
        u = users[i]
        d = u["devices"][0]
        sender_key_distribute(
            group_id=group.pk,
            sender_user_id=u["user_id"],
            sender_device_id=d["device_id"],
            group_epoch=group.group_epoch,
            sender_key_id=f"sk-{i}",
            envelopes=[
                {"device_id": other, "ciphertext": "b2xt", "message_type": 0}
                for other in everyone
                if other != d["device_id"]
            ],
        )
        sender_devices.append({**d, "sender_key_id": f"sk-{i}"})
    devices = [d for u in users for d in u["devices"]]
    return {
        "group_id": str(group.pk),
        "group_epoch": group.group_epoch,
        "devices": devices,
        "senders": sender_devices,
        "distributions": len(sender_devices),
    }


def start_servers(workers: int, env: dict) -> list[tuple[subprocess.Popen, int]]:
    """dm_throughput's start_servers on ports of our own (the two benches may run side by side)."""
    return start_daphnes(workers, env, "daphne", port_base=PORT_BASE)


# --- Database writes ------------------------------------------------------------------------------


def table_writes(dsn: str) -> dict:
    """Rows inserted/updated/deleted so far per table (PostgreSQL's counters), and row counts."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        stats = {
            name: {"ins": ins, "upd": upd, "del": dele}
            for name, ins, upd, dele in conn.execute(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
            ).fetchall()
        }
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # noqa: S608
    return {"stats": stats, "counts": counts}


def writes_per_message(before: dict, after: dict, messages: int) -> dict:
    m = max(messages, 1)
    per_table = {}
    total = 0
    for name, a in after["stats"].items():
        b = before["stats"].get(name, {"ins": 0, "upd": 0, "del": 0})
        d = {k: a[k] - b[k] for k in a}
        if any(d.values()):
            per_table[name] = {k: round(v / m, 2) for k, v in d.items() if v}
            total += sum(d.values())
    return {
        "all_tables_rows_written_per_message": round(total / m, 2),
        "by_table": per_table,
        "new_rows_per_message": {
            t: round((after["counts"][t] - before["counts"][t]) / m, 3)
            for t in ("group_messages", "group_delivery")
        },
    }


# --- Load -----------------------------------------------------------------------------------------


class Conn:
    """One device's WebSocket: every group.message's arrival, by seq."""

    def __init__(self, device: dict, ws):
        self.device = device
        self.ws = ws
        self.arrivals: dict[int, float] = {}  # seq -> monotonic arrival (proto 1)
        self.duplicates = 0
        self.distributions: set[int] = set()
        self.problems: list[dict] = []
        self.frames: dict[str, int] = {}
        self.received_since_ack = 0
        self.last_seq = 0
        self.task: asyncio.Task | None = None


async def run(args, setup: dict, ports: list[int], dsn: str, server_pids: list[int]) -> dict:
    from websockets.asyncio.client import connect

    group_id = setup["group_id"]
    sent: dict[str, dict] = {}  # client_message_id -> {t, device, seq}
    send_errors: dict[str, int] = {}

    async def reader(c: Conn) -> None:
        try:
            async for raw in c.ws:
                now = time.monotonic()
                frame = json.loads(raw)
                kind = frame["type"]
                c.frames[kind] = c.frames.get(kind, 0) + 1
                if kind == "group.message":
                    seq = frame["seq"]
                    if frame["proto"] != 1:
                        c.distributions.add(seq)
                        continue
                    if seq in c.arrivals:
                        c.duplicates += 1
                        continue
                    c.arrivals[seq] = now
                    c.last_seq = max(c.last_seq, seq)
                    c.received_since_ack += 1
                    if c.received_since_ack >= args.ack_every:  # as a real client acknowledges
                        c.received_since_ack = 0
                        await c.ws.send(
                            json.dumps({"type": "group.ack", "group_id": group_id, "seq": c.last_seq})
                        )
                elif kind == "group.sent":
                    entry = sent.get(frame["client_message_id"])
                    if entry is not None:
                        entry["seq"] = frame["seq"]
                        entry["duplicate"] = frame["duplicate"]
                elif kind == "error":
                    send_errors[frame.get("code", "?")] = send_errors.get(frame.get("code", "?"), 0) + 1
                elif kind == "closing":
                    c.problems.append(frame)
        except Exception as exc:  # reported, not lost with the task
            c.problems.append({"exception": repr(exc)})

    # Connect every device, spread over the processes.
    conns: list[Conn] = []
    t_connect = time.monotonic()
    for n, d in enumerate(setup["devices"]):
        port = ports[n % len(ports)]
        ws = await connect(
            f"ws://127.0.0.1:{port}/ws",
            additional_headers={"Authorization": f"Bearer {d['token']}"},
            max_queue=None,
            open_timeout=30,
        )
        c = Conn(d, ws)
        c.task = asyncio.create_task(reader(c))
        conns.append(c)
    connect_s = time.monotonic() - t_connect
    # The replay on connect: every device but a sender's own gets each distribution.
    sender_ids = {s["device_id"] for s in setup["senders"]}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(
            len(c.distributions) >= setup["distributions"] - (c.device["device_id"] in sender_ids)
            for c in conns
        ):
            break
        await asyncio.sleep(0.1)
    replay_complete = all(
        len(c.distributions) >= setup["distributions"] - (c.device["device_id"] in sender_ids) for c in conns
    )

    # Keep-alive (the server closes a connection silent for ping interval + timeout) and the
    # load generator's own event-loop lag.
    stop_aux = asyncio.Event()
    lags: list[float] = []

    async def keepalive() -> None:
        while not stop_aux.is_set():
            for c in conns:
                try:
                    await c.ws.send(json.dumps({"type": "ping"}))
                except Exception as exc:
                    c.problems.append({"keepalive": repr(exc)})
            try:
                await asyncio.wait_for(stop_aux.wait(), 10)
            except TimeoutError:
                pass

    async def lag_probe() -> None:
        while not stop_aux.is_set():
            t = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - t - 0.01)

    aux = [asyncio.create_task(keepalive()), asyncio.create_task(lag_probe())]
    by_device = {c.device["device_id"]: c for c in conns}
    run_writes_before = await asyncio.to_thread(table_writes, dsn)
    run_id = uuid.uuid4().hex[:8]
    rounds = []

    for rate in args.rates:
        lags.clear()
        before_writes = await asyncio.to_thread(table_writes, dsn)
        cpu_before = cpu_by_group(server_pids)
        round_ids: list[str] = []
        senders = setup["senders"]
        interval = len(senders) / rate  # each sender's period
        t0 = time.monotonic() + 0.2
        n_per_sender = int(args.seconds * rate / len(senders))
        behind: list[float] = []  # how late each send left its schedule

        async def sender_loop(
            i: int, s: dict, t0=t0, interval=interval, n=n_per_sender, rate=rate, ids=round_ids, slips=behind
        ) -> None:
            ws = by_device[s["device_id"]].ws
            for k in range(n):
                target = t0 + k * interval + i / rate
                delay = target - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                cmid = f"{run_id}-{rate}-{i}-{k}"
                now = time.monotonic()
                slips.append(now - target)
                sent[cmid] = {"t": now, "device": s["device_id"], "seq": None}
                ids.append(cmid)
                await ws.send(
                    json.dumps(
                        {
                            "type": "group.send",
                            "group_id": group_id,
                            "group_epoch": setup["group_epoch"],
                            "sender_key_id": s["sender_key_id"],
                            "client_message_id": cmid,
                            "ciphertext": b64(os.urandom(96)),
                        }
                    )
                )

        await asyncio.gather(*(sender_loop(i, s) for i, s in enumerate(senders)))
        send_elapsed = time.monotonic() - t0

        def expected_missing(round_ids=round_ids) -> int:
            missing = 0
            for cmid in round_ids:
                e = sent[cmid]
                if e["seq"] is None:
                    missing += 1
                    continue
                missing += sum(
                    1 for c in conns if c.device["device_id"] != e["device"] and e["seq"] not in c.arrivals
                )
            return missing

        drain_deadline = time.monotonic() + args.drain
        while time.monotonic() < drain_deadline and expected_missing():
            await asyncio.sleep(0.1)
        cpu_after = cpu_by_group(server_pids)
        after_writes = await asyncio.to_thread(table_writes, dsn)

        stored = [sent[c] for c in round_ids if sent[c]["seq"] is not None]
        last_latency, all_latency = [], []
        lost = 0
        first_send = min((sent[c]["t"] for c in round_ids), default=t0)
        last_arrival = first_send
        for e in stored:
            arrivals = []
            for c in conns:
                if c.device["device_id"] == e["device"]:
                    continue
                at = c.arrivals.get(e["seq"])
                if at is None:
                    lost += 1
                else:
                    arrivals.append(at)
                    all_latency.append(at - e["t"])
            if arrivals:
                last_arrival = max(last_arrival, max(arrivals))
                if len(arrivals) == len(conns) - 1:
                    last_latency.append(max(arrivals) - e["t"])
        deliveries = len(all_latency)
        window = max(send_elapsed, last_arrival - first_send)
        rounds.append(
            {
                "target_msgs_per_s": rate,
                "messages_sent": len(round_ids),
                "messages_stored": len(stored),
                "messages_per_s": round(len(stored) / send_elapsed, 1),
                "deliveries": deliveries,
                "deliveries_expected": len(stored) * (len(conns) - 1),
                "deliveries_per_s": round(deliveries / window, 1),
                "fanout_latency_last_device_p50_ms": pct(last_latency, 0.50),
                "fanout_latency_last_device_p99_ms": pct(last_latency, 0.99),
                "fanout_latency_last_device_max_ms": pct(last_latency, 1.0),
                "delivery_latency_any_device_p50_ms": pct(all_latency, 0.50),
                "delivery_latency_any_device_p99_ms": pct(all_latency, 0.99),
                "lost_deliveries": lost,
                "messages_not_acknowledged_by_server": len(round_ids) - len(stored),
                "sends_answered_as_duplicates": sum(1 for e in stored if e.get("duplicate")),
                "send_schedule_slip_p99_ms": pct(behind, 0.99),
                "loadgen_loop_lag_p50_ms": pct(lags, 0.50),
                "loadgen_loop_lag_p99_ms": pct(lags, 0.99),
                "new_rows_per_message": writes_per_message(before_writes, after_writes, len(stored))[
                    "new_rows_per_message"
                ],
                "cpu_seconds_per_100_messages": {
                    k: round((cpu_after[k] - cpu_before[k]) / max(len(stored), 1) * 100, 2) for k in cpu_after
                },
            }
        )
        print(json.dumps(rounds[-1]), file=sys.stderr, flush=True)

    # An idle backend flushes its table counters within PGSTAT_IDLE_INTERVAL (10 s): wait for it
    # (the keep-alive pings write nothing to the tables counted here).
    await asyncio.sleep(11)
    run_writes = writes_per_message(
        run_writes_before,
        await asyncio.to_thread(table_writes, dsn),
        sum(r["messages_stored"] for r in rounds),
    )
    stop_aux.set()
    await asyncio.gather(*aux)
    for c in conns:
        await c.ws.close()
        if c.task:
            c.task.cancel()
    frames: dict[str, int] = {}
    for c in conns:
        for k, v in c.frames.items():
            frames[k] = frames.get(k, 0) + v
    return {
        "connections": len(conns),
        "connect_seconds": round(connect_s, 2),
        "replay_complete": replay_complete,
        "rounds": rounds,
        "db_writes_whole_run": run_writes,
        "duplicates": sum(c.duplicates for c in conns),
        "send_errors": send_errors,
        "connection_problems": [p for c in conns for p in c.problems][:5],
        "frames_received": frames,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument(
        "--two-device-share", type=float, default=0.5, help="share of members with a second device"
    )
    parser.add_argument("--senders", type=int, default=5)
    parser.add_argument("--rates", default="10,25,50,100", help="target group messages/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=10, help="per rate")
    parser.add_argument("--drain", type=float, default=15, help="seconds to wait for stragglers per rate")
    parser.add_argument("--workers", type=int, default=2, help="daphne processes")
    parser.add_argument("--ack-every", type=int, default=50, help="each device acks every N messages")
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432"))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/13"))
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]

    dsn = setup_database(args.pg)
    env = server_env(
        dsn,
        args.redis,
        GROUP_MESSAGE_RATE_PER_USER_PER_MIN="10000000",
        MAX_CONNS_PER_IP="100000",
        REGISTRATIONS_PER_IP_PER_HOUR="100000",
    )
    os.environ.update(env)
    import redis

    redis.Redis.from_url(args.redis).flushdb()
    t = time.monotonic()
    setup = setup_group(args.members, args.senders, args.two_device_share)
    setup_s = time.monotonic() - t
    servers = start_servers(args.workers, env)
    try:
        ports = [p for _, p in servers]
        load = asyncio.run(run(args, setup, ports, dsn, [proc.pid for proc, _ in servers]))
    finally:
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            proc.wait(timeout=10)
    pg = postgres_insert_rate(dsn, args.senders, 5)
    publish = redis_publish_rate(args.redis, args.senders, 5)
    result = {
        "members": args.members,
        "devices": len(setup["devices"]),
        "senders": args.senders,
        "workers": args.workers,
        "seconds_per_rate": args.seconds,
        "setup_seconds": round(setup_s, 1),
        **load,
        "postgres_single_row_insert": pg,
        "redis_publish": publish,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
