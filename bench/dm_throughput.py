"""DM throughput and latency against the production shape: daphne processes, PostgreSQL, Redis.

    .venv/bin/python bench/dm_throughput.py [--senders 16] [--seconds 10] [--workers 2]
        [--compare-workers] [--ack-every 50] [--transport ws|rest]

Creates a scratch database, registers one recipient device and N sender devices (real Ed25519
signatures via vodozemac), starts `--workers` daphne processes, connects every client over
WebSocket and sends `dm.send` frames (each sender waits for its `dm.sent` before the next, like a
real client with one message in flight; `--transport rest` posts to the REST endpoint instead, one
keep-alive connection per sender); the recipient acknowledges every `--ack-every` messages,
as a real client does. Then a single sender alone measures latency. With `--compare-workers` the
same is run with 1 process and then with `--workers`, and the delivered ratio is printed (does
adding a process add throughput?). In the same run it measures PostgreSQL's own single-row INSERT
rate and Redis' PUBLISH rate with the same number of clients: the ceilings beside our figures.
Prints one JSON object.

Every message is persisted and checked: the recipient must see cursors 1..N exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DB = "chatsite_bench"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p * len(values)))] * 1000, 3)


# --- PostgreSQL's own limit ----------------------------------------------------------------------


def postgres_insert_rate(dsn: str, clients: int, seconds: float) -> dict:
    """Single-row INSERTs, one transaction each, from `clients` parallel connections."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_insert")
        conn.execute(
            "CREATE TABLE bench_insert (id bigserial primary key, device_id uuid, body text, at timestamptz)"
        )
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while time.monotonic() < stop:
                conn.execute(
                    "INSERT INTO bench_insert (device_id, body, at) VALUES (gen_random_uuid(), %s, now())",
                    ["x" * 64],
                )
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    result = {"clients": clients, "inserts_per_s": round(sum(counts) / elapsed, 1)}
    if shutil.which("pgbench"):
        script = Path("/tmp/chatsite_bench_insert.sql")
        script.write_text(
            "INSERT INTO bench_insert (device_id, body, at) VALUES (gen_random_uuid(), 'x', now());\n"
        )
        out = subprocess.run(
            ["pgbench", "-n", "-c", str(clients), "-j", "2", "-T", str(int(seconds)), "-f", str(script), dsn],
            capture_output=True,
            text=True,
        ).stdout
        for line in out.splitlines():
            if line.startswith("tps ="):
                result["pgbench_tps"] = float(line.split()[2])
    return result


# --- Setup ----------------------------------------------------------------------------------------


def setup_database(base_dsn: str) -> str:
    import psycopg

    with psycopg.connect(f"{base_dsn}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    return f"{base_dsn}/{BENCH_DB}"


def server_env(dsn: str, redis_url: str, **limits: str) -> dict[str, str]:
    """The environment of the bench's servers and setup: production settings on the scratch
    database, quiet logs, and the per-connection budgets (plus `limits`) out of the way."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "DATABASE_URL": dsn,
        "REDIS_URL": redis_url,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING",
        "MAX_MSGS_PER_10S": "10000000",
        "MAX_BYTES_PER_10S": "10000000000",
        **limits,
    }


def register_device(session, name: str):
    """A device with real keys (a vodozemac account: Ed25519-signed fallback key), registered
    through the service the API calls. Django must be set up."""
    import vodozemac

    from dm.services import devices as device_services

    account = vodozemac.Account()
    account.generate_fallback_key()
    ((kid, key),) = account.fallback_key.items()
    signed = {
        "key_id": kid,
        "public_key": key.to_base64(),
        "signature": account.sign(key.to_bytes()).to_base64(),
    }
    return device_services.device_register(
        session=session,
        name=name,
        identity_key=account.curve25519_key.to_base64(),
        signing_key=account.ed25519_key.to_base64(),
        signed_prekey=signed,
        one_time_prekeys=[],
        fallback_key=signed,
    )


def setup_parties(senders: int) -> dict:
    """Users, sessions and devices through the real services; returns tokens and ids."""
    import django

    django.setup()
    from django.core.management import call_command

    from chatsite.accounts import services as accounts
    from dm.services import messages as message_services

    call_command("migrate", verbosity=0)

    def party(name: str) -> dict:
        user = accounts.user_register(username=name, password="bench-password-123456")
        session, token = accounts.session_login(username=name, password="bench-password-123456")
        device = register_device(session, f"{name}-device")
        return {"user": user, "token": token, "device_id": str(device.pk)}

    recipient = party("recipient")
    out = {"recipient": {"token": recipient["token"], "device_id": recipient["device_id"]}, "senders": []}
    for i in range(senders + 1):  # the last one is the single-sender latency run's
        s = party(f"sender{i}")
        conversation, _ = message_services.conversation_open(
            user=s["user"], other_user_id=recipient["user"].pk
        )
        out["senders"].append(
            {"token": s["token"], "device_id": s["device_id"], "conversation_id": conversation.pk}
        )
    return out


def redis_publish_rate(url: str, clients: int, seconds: float) -> dict:
    """PUBLISH of a 200-byte payload from `clients` parallel connections: Redis' own limit here."""
    import redis

    counts = [0] * clients
    stop = time.monotonic() + seconds
    payload = b"x" * 200

    def worker(i: int) -> None:
        client = redis.Redis.from_url(url)
        while time.monotonic() < stop:
            client.publish("bench:publish", payload)
            counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"clients": clients, "publishes_per_s": round(sum(counts) / seconds, 1)}


# --- Where the CPU goes ---------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_by_group(server_pids: list[int]) -> dict[str, float]:
    """CPU seconds used so far by the servers, PostgreSQL, Redis and this load generator."""
    out = {"servers": 0.0, "postgres": 0.0, "redis": 0.0, "load_generator": 0.0}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / _TICKS
        pid = int(entry)
        if pid in server_pids:
            out["servers"] += seconds
        elif pid == me:
            out["load_generator"] += seconds
        elif comm == "postgres":
            out["postgres"] += seconds
        elif comm.startswith("redis-server"):
            out["redis"] += seconds
    return out


# --- Servers --------------------------------------------------------------------------------------


def server_command(server: str, port: int) -> list[str]:
    bin_dir = Path(sys.executable).parent
    if server == "uvicorn":
        return [
            str(bin_dir / "uvicorn"),
            "chatsite.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws",
            "websockets",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    # The production launcher (chatsite/server.py), as the Dockerfile runs it.
    return [str(bin_dir / "python"), "-m", "chatsite.server", "--bind", "127.0.0.1", "--port", str(port)]


def start_servers(
    workers: int, env: dict, server: str = "daphne", port_base: int = 8700
) -> list[tuple[subprocess.Popen, int]]:
    servers = []
    for i in range(workers):
        port = port_base + i
        # The servers' own log lines (JSON), per run: BENCH_SERVER_LOG_DIR keeps them for reading.
        log_dir = os.environ.get("BENCH_SERVER_LOG_DIR")
        log = open(Path(log_dir) / f"server-{workers}w-{port}.log", "a") if log_dir else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(
            server_command(server, port),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        servers.append((proc, port))
    for proc, port in servers:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/live", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"daphne on {port} did not start") from None
                time.sleep(0.2)
    return servers


# --- Load -----------------------------------------------------------------------------------------


async def run_load(
    ports: list[int],
    parties: dict,
    senders: list[dict],
    seconds: float,
    start_cursor: int = 0,
    ack_every: int = 50,
    transport: str = "ws",
) -> dict:
    from websockets.asyncio.client import connect

    recipient = parties["recipient"]
    received: list[tuple[int, float]] = []
    latencies: list[float] = []
    done = asyncio.Event()
    stop_at = time.monotonic() + seconds
    sent = 0
    send_errors: list[str] = []
    recipient_problems: list[dict] = []  # closing / error frames the recipient saw
    recipient_frames: dict[str, int] = {}
    run_id = os.urandom(4).hex()
    duplicates_answered = 0  # dm.sent with duplicate: true (must be 0: every id is new)

    async def recipient_loop(ws, expected: asyncio.Future) -> None:
        try:
            await _recipient_loop(ws, expected)
        except Exception as exc:  # reported, not lost with the task
            recipient_problems.append({"exception": repr(exc)})

    async def _recipient_loop(ws, expected: asyncio.Future) -> None:
        last_ack = 0
        async for raw in ws:
            frame = json.loads(raw)
            recipient_frames[frame["type"]] = recipient_frames.get(frame["type"], 0) + 1
            if frame["type"] != "dm.message":
                if frame["type"] in ("closing", "error"):
                    recipient_problems.append(frame)
                continue
            now = time.time()
            received.append((frame["cursor"], now))
            (sent_at,) = struct.unpack("!d", base64.b64decode(frame["ciphertext"] + "==")[:8])
            latencies.append(now - sent_at)
            if frame["cursor"] - last_ack >= ack_every:  # as a real client acknowledges
                last_ack = frame["cursor"]
                await ws.send(json.dumps({"type": "dm.ack", "up_to": last_ack}))
            if expected.done() and len(received) >= expected.result():
                done.set()

    async def sender_loop(ws, sender: dict, n: int) -> None:
        nonlocal sent, duplicates_answered
        i = 0
        while time.monotonic() < stop_at:
            i += 1
            payload = b64(struct.pack("!d", time.time()) + os.urandom(56))
            await ws.send(
                json.dumps(
                    {
                        "type": "dm.send",
                        "conversation_id": sender["conversation_id"],
                        # Unique per run: a repeated id is an idempotent retry, stored once.
                        "client_message_id": f"{run_id}-{n}-{i}",
                        "envelopes": [
                            {"device_id": recipient["device_id"], "ciphertext": payload, "type": 1}
                        ],
                    }
                )
            )
            while True:
                reply = json.loads(await ws.recv())
                if reply["type"] == "dm.sent":
                    sent += 1
                    duplicates_answered += reply["duplicate"]
                    break
                if reply["type"] == "error":
                    send_errors.append(reply["code"])
                    break

    # REST senders: one keep-alive HTTP connection each, on a thread of their own (closed loop).
    rest_threads = ThreadPoolExecutor(max_workers=max(1, len(senders)))

    async def rest_sender_loop(port: int, sender: dict, n: int) -> None:
        nonlocal sent, duplicates_answered
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        path = f"/dm/conversations/{sender['conversation_id']}/messages"
        send_headers = {"Authorization": f"Bearer {sender['token']}", "Content-Type": "application/json"}

        def post(body: bytes) -> tuple[int, dict]:
            conn.request("POST", path, body=body, headers=send_headers)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())

        loop = asyncio.get_running_loop()
        i = 0
        try:
            while time.monotonic() < stop_at:
                i += 1
                payload = b64(struct.pack("!d", time.time()) + os.urandom(56))
                body = json.dumps(
                    {
                        "client_message_id": f"{run_id}-{n}-{i}",
                        "envelopes": [
                            {"device_id": recipient["device_id"], "ciphertext": payload, "type": 1}
                        ],
                    }
                ).encode()
                status, reply = await loop.run_in_executor(rest_threads, post, body)
                if status in (200, 201):
                    sent += 1
                    duplicates_answered += reply["duplicate"]
                else:
                    send_errors.append(reply.get("code", str(status)))
        finally:
            conn.close()

    headers = {"Authorization": f"Bearer {recipient['token']}"}
    expected: asyncio.Future = asyncio.get_running_loop().create_future()
    url = f"ws://127.0.0.1:{ports[0]}/ws?cursor={start_cursor}"
    async with connect(url, additional_headers=headers, max_queue=None) as rws:
        rtask = asyncio.create_task(recipient_loop(rws, expected))
        conns = []
        if transport == "ws":
            for n, s in enumerate(senders):
                port = ports[n % len(ports)]
                conns.append(
                    await connect(
                        f"ws://127.0.0.1:{port}/ws",
                        additional_headers={"Authorization": f"Bearer {s['token']}"},
                    )
                )
        t0, t0_wall = time.monotonic(), time.time()
        if transport == "ws":
            await asyncio.gather(
                *(sender_loop(ws, s, n) for n, (ws, s) in enumerate(zip(conns, senders, strict=True)))
            )
        else:
            await asyncio.gather(
                *(rest_sender_loop(ports[n % len(ports)], s, n) for n, s in enumerate(senders))
            )
        rest_threads.shutdown(wait=False)
        send_elapsed = time.monotonic() - t0
        expected.set_result(sent)
        if len(received) < sent:
            try:
                await asyncio.wait_for(done.wait(), 30)
            except TimeoutError:
                pass
        deliver_elapsed = max(t for _, t in received) - t0_wall if received else 0
        rtask.cancel()
        for ws in conns:
            await ws.close()
    cursors = sorted(c for c, _ in received)
    return {
        "senders": len(senders),
        "sent": sent,
        "delivered": len(received),
        "send_errors": len(send_errors),
        "sends_answered_as_duplicates": duplicates_answered,
        "recipient_problems": recipient_problems[:5],
        "recipient_frames": recipient_frames,
        "sends_per_s": round(sent / send_elapsed, 1),
        "delivered_per_s": round(len(received) / max(send_elapsed, deliver_elapsed), 1),
        "latency_p50_ms": pct(latencies, 0.50),
        "latency_p99_ms": pct(latencies, 0.99),
        "lost": sent - len(set(cursors)),
        "duplicates": len(cursors) - len(set(cursors)),
        "in_order_gapless": cursors == list(range(cursors[0], cursors[0] + len(cursors)))
        if cursors
        else True,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2, help="daphne processes")
    parser.add_argument(
        "--compare-workers",
        action="store_true",
        help="run 1 and then --workers processes in the same run and print the delivered ratio",
    )
    parser.add_argument("--ack-every", type=int, default=50, help="the recipient acks every N messages")
    parser.add_argument(
        "--transport",
        choices=["ws", "rest"],
        default="ws",
        help="senders use dm.send frames or POST /dm/conversations/{id}/messages (keep-alive HTTP)",
    )
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne")
    parser.add_argument("--profile", help="write a py-spy profile (collapsed stacks) of worker 0 here")
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432"))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/12"))
    args = parser.parse_args()

    worker_counts = [1, args.workers] if args.compare_workers and args.workers > 1 else [args.workers]
    dsn = setup_database(args.pg)
    env = server_env(
        dsn,
        args.redis,
        DM_SEND_RATE_PER_MIN="10000000",
        DM_SEND_RATE_PER_HOUR="10000000",
    )
    os.environ.update(env)
    import redis

    redis.Redis.from_url(args.redis).flushdb()
    parties = setup_parties(args.senders)
    from dm.models import DeviceQueue

    def last_cursor() -> int:
        return DeviceQueue.objects.get(device_id=parties["recipient"]["device_id"]).last_seq

    def one_round(workers: int, profile: str | None) -> dict:
        """Start `workers` server processes, run the 16-sender load and the single-sender run."""
        servers = start_servers(workers, env, args.server)
        try:
            ports = [p for _, p in servers]
            spy = None
            if profile:
                spy = subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "-p",
                        str(servers[0][0].pid),
                        "-d",
                        str(int(args.seconds)),
                        "-f",
                        "raw",
                        "-o",
                        profile,
                        "-r",
                        "200",
                        # Sample without stopping the process (stopping it at 200 Hz distorts a
                        # server with many threads), and only the thread holding the GIL: where
                        # the Python CPU goes.
                        "--nonblocking",
                        "--gil",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            pids = [proc.pid for proc, _ in servers]
            cpu_before = cpu_by_group(pids)
            throughput = asyncio.run(
                run_load(
                    ports,
                    parties,
                    parties["senders"][: args.senders],
                    args.seconds,
                    start_cursor=last_cursor(),
                    ack_every=args.ack_every,
                    transport=args.transport,
                )
            )
            cpu_after = cpu_by_group(pids)
            per_1000 = {
                k: round((cpu_after[k] - cpu_before[k]) / max(throughput["sent"], 1) * 1000, 2)
                for k in cpu_after
            }
            if spy is not None:
                spy.wait(timeout=60)
            single = asyncio.run(
                run_load(
                    ports[:1],
                    parties,
                    parties["senders"][-1:],
                    min(args.seconds, 5),
                    start_cursor=last_cursor(),
                    ack_every=args.ack_every,
                    transport=args.transport,
                )
            )
        finally:
            for proc, _ in servers:
                proc.terminate()
            for proc, _ in servers:
                proc.wait(timeout=10)
        return {
            "workers": workers,
            "concurrent": throughput,
            "cpu_seconds_per_1000_messages": per_1000,
            "single_sender": {
                k: single[k] for k in ("sent", "sends_per_s", "latency_p50_ms", "latency_p99_ms", "lost")
            },
        }

    rounds = [one_round(w, args.profile if w == args.workers else None) for w in worker_counts]
    pg = postgres_insert_rate(dsn, args.senders, min(args.seconds, 5))
    publish = redis_publish_rate(args.redis, args.senders, min(args.seconds, 5))
    result: dict = {
        "server": args.server,
        "transport": args.transport,
        "ack_every": args.ack_every,
        "rounds": rounds,
        "postgres_single_row_insert": pg,
        "redis_publish": publish,
    }
    if len(rounds) == 2:
        one, two = (r["concurrent"]["delivered_per_s"] for r in rounds)
        result["scale_out_delivered_ratio_2_over_1"] = round(two / max(one, 0.1), 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
