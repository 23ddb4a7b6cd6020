"""The status feed of a reader with many contacts posting (issue 16, "Performance").

    .venv/bin/python bench/status_feed.py [--contacts 200] [--posts-per-contact 3]
        [--requests 500] [--workers 1]

Creates a scratch database (`--db`, default chatsite_bench_status) and flushes one Redis database
(`--redis`, default db 15). One reader and `--contacts` authors (accounts and sessions inserted in
bulk, as bench/presence_load.py does); reader and authors have each other as contacts. Every
author posts `--posts-per-contact` statuses to "all my contacts" through the real service
(status.services.posts.post_create: the audience is materialised in status_audience), and the
reader records a view of every other post (view_record), so the feed has seen and unseen state.

Then `--workers` daphne processes (`python -m chatsite.server`) serve `--requests` sequential
`GET /status/feed` (the default page: 20 authors) on one keep-alive connection with the reader's
bearer token, after `--warmup` requests, and as many `GET /status/feed?limit=100` (the largest
page); and `--walks` times the whole feed page by page (default page size, following
`next_cursor` until null). Latencies are client-side, per request.

SQL queries per request: pg_stat_statements is not loaded on this PostgreSQL, so the same request
(same URL, same middleware and view) runs in this process through Django's test client under
CaptureQueriesContext; that count is what the server runs per request.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dm_throughput import b64, pct, server_env  # noqa: E402  (after the path insert)
from bench.dm_throughput import start_servers as start_daphnes  # noqa: E402
from bench.presence_load import setup_database  # noqa: E402


def setup_feed(contacts: int, posts_per_contact: int) -> dict:
    import django

    django.setup()
    from datetime import timedelta

    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    from chatsite.accounts.models import Contact, Session, User
    from chatsite.accounts.tokens import hash_token, new_token
    from status.services.posts import post_create, view_record

    call_command("migrate", verbosity=0)
    now = timezone.now()
    reader = User.objects.create(username="feedreader", password="!bench-no-login")
    authors = User.objects.bulk_create(
        [User(username=f"author{i}", password="!bench-no-login") for i in range(contacts)], batch_size=1000
    )
    token = new_token()
    Session.objects.create(
        user=reader,
        token_hash=hash_token(token),
        token_prefix=token[:8],
        created_at=now,
        expires_at=now + timedelta(hours=settings.AUTH_TOKEN_TTL_HOURS),
        last_used_at=now,
    )
    Contact.objects.bulk_create(
        [Contact(owner=a, contact=reader) for a in authors]
        + [Contact(owner=reader, contact=a) for a in authors],
        batch_size=1000,
    )
    posts = 0
    viewed = 0
    for _ in range(posts_per_contact):
        for a in authors:
            post = post_create(user_id=a.pk, audience_mode="contacts", ciphertext=b64(os.urandom(120)))
            posts += 1
            if posts % 2 == 0:
                view_record(user_id=reader.pk, post_id=post.pk)
                viewed += 1
    return {"token": token, "reader_id": reader.pk, "posts": posts, "viewed": viewed}


def queries_per_request(token: str, paths: list[str], repeat: int = 20) -> dict[str, dict]:
    """The SQL statements one request runs, counted in this process (same view and middleware),
    and the median time of the request and of its SQL here (Django's own timing per statement)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {token}")
    out = {}
    for path in paths:
        client.get(path)  # warm: first-request work (content types, caches) is not per request
        counts, request_s, sql_s = [], [], []
        for _ in range(repeat):
            t = time.perf_counter()
            with CaptureQueriesContext(connection) as ctx:
                resp = client.get(path)
            request_s.append(time.perf_counter() - t)
            if resp.status_code != 200:
                raise RuntimeError(f"{path}: {resp.status_code} {resp.content[:200]!r}")
            counts.append(len(ctx.captured_queries))
            sql_s.append(sum(float(q["time"]) for q in ctx.captured_queries))
        out[path] = {
            "sql_queries_per_request": max(counts),
            "in_process_request_p50_ms": pct(request_s, 0.5),
            "in_process_sql_p50_ms": pct(sql_s, 0.5),
        }
    return out


def timed_get(conn: http.client.HTTPConnection, path: str, token: str) -> tuple[float, dict]:
    t = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - t
    if resp.status != 200:
        raise RuntimeError(f"{path}: {resp.status} {body[:200]!r}")
    return elapsed, json.loads(body)


def latency_run(port: int, token: str, path: str, requests: int, warmup: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(warmup):
        timed_get(conn, path, token)
    times = []
    body: dict = {}
    t0 = time.perf_counter()
    for _ in range(requests):
        elapsed, body = timed_get(conn, path, token)
        times.append(elapsed)
    wall = time.perf_counter() - t0
    conn.close()
    return {
        "requests": requests,
        "p50_ms": pct(times, 0.50),
        "p95_ms": pct(times, 0.95),
        "p99_ms": pct(times, 0.99),
        "max_ms": pct(times, 1.0),
        "requests_per_s": round(requests / wall, 1),
        "authors_in_page": len(body.get("groups", [])),
        "posts_in_page": sum(len(g["posts"]) for g in body.get("groups", [])),
    }


def walk_run(port: int, token: str, walks: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    totals, pages, authors = [], 0, 0
    for _ in range(walks):
        cursor, total, pages, authors = None, 0.0, 0, 0
        while True:
            path = "/status/feed" + (f"?cursor={cursor}" if cursor else "")
            elapsed, body = timed_get(conn, path, token)
            total += elapsed
            pages += 1
            authors += len(body["groups"])
            cursor = body["next_cursor"]
            if not cursor:
                break
        totals.append(total)
    conn.close()
    return {
        "walks": walks,
        "pages": pages,
        "authors_seen": authors,
        "whole_feed_p50_ms": pct(totals, 0.5),
        "whole_feed_max_ms": pct(totals, 1.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=200)
    parser.add_argument("--posts-per-contact", type=int, default=3)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--walks", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1, help="daphne processes (requests go to the first)")
    parser.add_argument("--port-base", type=int, default=8780)
    parser.add_argument("--db", default="chatsite_bench_status", help="scratch database (dropped, created)")
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432"))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/15"))
    args = parser.parse_args()

    dsn = setup_database(args.pg, args.db)
    env = server_env(dsn, args.redis)
    os.environ.update(env)
    import redis

    redis.Redis.from_url(args.redis).flushdb()
    t = time.monotonic()
    setup = setup_feed(args.contacts, args.posts_per_contact)
    setup_s = time.monotonic() - t
    queries = queries_per_request(setup["token"], ["/status/feed", "/status/feed?limit=100"])
    servers = start_daphnes(args.workers, env, "daphne", port_base=args.port_base)
    try:
        port = servers[0][1]
        default_page = latency_run(port, setup["token"], "/status/feed", args.requests, args.warmup)
        largest_page = latency_run(port, setup["token"], "/status/feed?limit=100", args.requests, args.warmup)
        walk = walk_run(port, setup["token"], args.walks)
    finally:
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            proc.wait(timeout=30)
    result = {
        "contacts_posting": args.contacts,
        "posts": setup["posts"],
        "posts_viewed_by_reader": setup["viewed"],
        "workers": args.workers,
        "setup_seconds": round(setup_s, 1),
        "feed_default_page": {**default_page, **queries["/status/feed"]},
        "feed_limit_100": {**largest_page, **queries["/status/feed?limit=100"]},
        "feed_whole_walk": walk,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
