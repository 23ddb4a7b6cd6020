"""Does preparing the send statement pay? The one-statement DM send, run sequentially through
Django's cursor (client-side binding: PostgreSQL parses and plans it every time; visible to
Django's query instrumentation) and as a server-side prepared statement on the raw psycopg cursor.

    .venv/bin/python bench/send_statement.py [--sends 400] [--rounds 6]

Creates a scratch database, one sender and one recipient with two devices each (through the real
services), then alternates rounds of each mode and prints one JSON object: per-send wall time
(median of rounds, and every round) and PostgreSQL backend CPU per send (from /proc), per mode.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = "chatsite_bench_stmt"
_TICKS = os.sysconf("SC_CLK_TCK")


def scratch_database() -> None:
    import psycopg

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chatsite").rpartition("/")[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    os.environ["DATABASE_URL"] = f"{base}/{BENCH_DB}"
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-0123456789abcdefghijklmnop")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")


def backend_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sends", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    scratch_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from dm.services import messages as m
    from tests.factories import ConversationFactory, DeviceFactory

    call_command("migrate", verbosity=0)
    sender, recipient = DeviceFactory(), DeviceFactory()
    sender_other, recipient_other = DeviceFactory(user=sender.user), DeviceFactory(user=recipient.user)
    conversation = ConversationFactory(user=sender.user, other=recipient.user)

    def request() -> m.SendRequest:
        return m.send_prepare(
            sender_id=sender.user_id,
            sender_device_id=sender.pk,
            conversation_id=conversation.pk,
            client_message_id=uuid.uuid4().hex,
            envelopes=[
                m.Envelope(str(d.pk), "QUFBQQ", 1) for d in (recipient, recipient_other, sender_other)
            ],
        )

    connection.ensure_connection()
    backend = connection.connection.info.backend_pid
    results: dict[str, dict] = {
        "django_cursor": {"rounds_us": [], "pg_cpu_us": []},
        "prepared": {"rounds_us": [], "pg_cpu_us": []},
    }
    for _ in range(args.rounds):
        for mode in results:
            m.SEND_STATEMENT_PREPARED = mode == "prepared"
            cpu0, t0 = backend_cpu_seconds(backend), time.perf_counter()
            for _ in range(args.sends):
                assert m._store_in_one_statement(request()) is not None
            elapsed, cpu = time.perf_counter() - t0, backend_cpu_seconds(backend) - cpu0
            results[mode]["rounds_us"].append(round(elapsed / args.sends * 1e6, 1))
            results[mode]["pg_cpu_us"].append(round(cpu / args.sends * 1e6, 1))
    for mode in results.values():
        mode["median_us_per_send"] = statistics.median(mode["rounds_us"])
        mode["median_pg_cpu_us_per_send"] = statistics.median(mode["pg_cpu_us"])
    print(json.dumps({"sends_per_round": args.sends, "rounds": args.rounds, **results}, indent=2))


if __name__ == "__main__":
    main()
