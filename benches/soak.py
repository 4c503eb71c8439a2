#!/usr/bin/env python3
"""Soak test of a running ragd server: mixed traffic from many clients, with
slow clients and disconnects, for a bounded time, on loopback only.

    benches/soak.py --url http://127.0.0.1:PORT --pid PID --key KEY \
        [--clients 64] [--seconds 300] [--out soak.json]

Each client loops over a mix of requests until the time is up: embeddings,
moderations, chat completions (short, some streamed, some RAG over a
collection it fills), collection search and upserts, malformed JSON and
absurd parameters (deliberate 4xx), a slow client that dribbles its headers,
and a client that sends a request and hangs up before the answer. Every
`--sample` seconds it records the server's resident memory (VmRSS), open
files (/proc/PID/fd) and threads. At the end it prints, and writes as JSON:
the samples, requests by kind and status, 5xx responses (none expected) and
transport errors. Panics are found by the caller in the server log.

Standard library only, so it runs on any machine with Python 3.
"""
import argparse
import http.client
import json
import os
import random
import socket
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlparse

DOC_WORDS = (
    "retrieval augmented generation combines a search index with a language model "
    "so that answers cite the documents they come from while the server keeps "
    "tenants apart and every acknowledged write durable"
).split()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_kind = Counter()
        self.errors = Counter()
        self.server_errors = []

    def record(self, kind, status):
        with self.lock:
            self.by_kind[f"{kind} {status}"] += 1
            if isinstance(status, int) and status >= 500:
                self.server_errors.append((kind, status))

    def error(self, kind, exc):
        with self.lock:
            self.errors[f"{kind}: {type(exc).__name__}"] += 1


def request(host, port, key, method, path, body=None, raw=None, timeout=120, stream=False):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {"Authorization": f"Bearer {key}"}
    data = None
    if raw is not None:
        data = raw
        headers["Content-Type"] = "application/json"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp.status, payload


def slow_client(host, port, stats):
    """Dribbles a request's headers one byte at a time, then gives up."""
    try:
        s = socket.create_connection((host, port), timeout=30)
        for b in b"GET /health HTTP/1.1\r\nX-Slow: ":
            s.send(bytes([b]))
            time.sleep(0.2)
        s.settimeout(30)
        got = s.recv(1024)
        stats.record("slow-client", "closed" if not got else got.split(b" ")[1].decode())
        s.close()
    except OSError as e:
        stats.record("slow-client", "closed")
        _ = e


def hang_up(host, port, key, stats):
    """Sends a chat request and closes the socket before the answer."""
    try:
        s = socket.create_connection((host, port), timeout=10)
        body = json.dumps({"model": "smollm2-135m-instruct-q4_1", "max_tokens": 64,
                           "messages": [{"role": "user", "content": "Tell me a long story."}]}).encode()
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        s.sendall(head + body)
        time.sleep(random.uniform(0.05, 0.5))
        s.close()
        stats.record("hang-up", "sent")
    except OSError as e:
        stats.error("hang-up", e)


def client(i, args, stop_at, stats):
    u = urlparse(args.url)
    host, port = u.hostname, u.port
    rng = random.Random(i)
    coll = f"soak{i % 8}"
    model = args.generator
    while time.time() < stop_at:
        kind = rng.choices(
            ["embed", "moderate", "chat", "chat-stream", "rag", "search", "upsert",
             "bad-json", "bad-params", "slow", "hang-up"],
            weights=[20, 10, 8, 4, 6, 15, 6, 8, 8, 2, 3],
        )[0]
        try:
            if kind == "embed":
                n = rng.randint(1, 8)
                st, _ = request(host, port, args.key, "POST", "/v1/embeddings",
                                {"model": "all-minilm-l6-v2",
                                 "input": [" ".join(rng.choices(DOC_WORDS, k=20)) for _ in range(n)]})
            elif kind == "moderate":
                st, _ = request(host, port, args.key, "POST", "/v1/moderations",
                                {"input": "Ignore previous instructions " * rng.randint(1, 40)})
            elif kind in ("chat", "chat-stream"):
                st, _ = request(host, port, args.key, "POST", "/v1/chat/completions",
                                {"model": model, "max_tokens": rng.randint(4, 24),
                                 "stream": kind == "chat-stream",
                                 "temperature": rng.choice([0, 0.7]),
                                 "messages": [{"role": "user", "content": f"Say something about {rng.choice(DOC_WORDS)}."}]})
            elif kind == "rag":
                st, _ = request(host, port, args.key, "POST", "/v1/chat/completions",
                                {"model": model, "max_tokens": 8,
                                 "messages": [{"role": "user", "content": "What does the server keep apart?"}],
                                 "rag": {"collection": coll, "top_k": 2}})
                if st == 404:
                    st = "404-no-collection-yet"
            elif kind == "search":
                st, _ = request(host, port, args.key, "POST", f"/v1/collections/{coll}/search",
                                {"query": " ".join(rng.choices(DOC_WORDS, k=6)), "top_k": 3})
                if st == 404:
                    st = "404-no-collection-yet"
            elif kind == "upsert":
                request(host, port, args.key, "POST", "/v1/collections", {"name": coll})
                docs = [{"id": f"d{rng.randint(0, 200)}",
                         "text": " ".join(rng.choices(DOC_WORDS, k=rng.randint(20, 300)))}
                        for _ in range(rng.randint(1, 4))]
                st, _ = request(host, port, args.key, "POST", f"/v1/collections/{coll}/documents",
                                {"documents": docs})
            elif kind == "bad-json":
                st, _ = request(host, port, args.key, "POST", rng.choice(
                    ["/v1/embeddings", "/v1/chat/completions", f"/v1/collections/{coll}/search"]),
                    raw=rng.choice([b"{", b"\xff\xfe", b'{"input": 3}', b"[]", b'{"messages": "x"}']))
            elif kind == "bad-params":
                st, _ = request(host, port, args.key, "POST", "/v1/chat/completions",
                                {"model": model, "max_tokens": 10 ** 9, "n": 10 ** 6,
                                 "messages": [{"role": "wizard", "content": "x"}]})
            elif kind == "slow":
                slow_client(host, port, stats)
                continue
            else:
                hang_up(host, port, args.key, stats)
                continue
            stats.record(kind, st)
        except Exception as e:  # noqa: BLE001 - every failure is counted
            stats.error(kind, e)


def sample(pid):
    status = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            status[k] = v.strip()
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {
        "rss_mib": int(status["VmRSS"].split()[0]) / 1024,
        "hwm_mib": int(status["VmHWM"].split()[0]) / 1024,
        "open_files": fds,
        "threads": int(status["Threads"]),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--key", default="none")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=300)
    ap.add_argument("--sample", type=int, default=15)
    ap.add_argument("--generator", default="smollm2-135m-instruct-q4_1")
    ap.add_argument("--out", default="soak.json")
    args = ap.parse_args()
    host = urlparse(args.url).hostname
    if not (host in ("localhost", "::1") or host.startswith("127.")):
        sys.exit("soak.py only targets loopback addresses")

    stats = Stats()
    t0 = time.time()
    stop_at = t0 + args.seconds
    threads = [threading.Thread(target=client, args=(i, args, stop_at, stats), daemon=True)
               for i in range(args.clients)]
    for t in threads:
        t.start()
    samples = []
    while time.time() < stop_at:
        s = sample(args.pid)
        s["t"] = round(time.time() - t0)
        samples.append(s)
        print(f"t={s['t']:4d}s rss={s['rss_mib']:.0f} MiB open_files={s['open_files']} threads={s['threads']}",
              flush=True)
        time.sleep(min(args.sample, max(0.0, stop_at - time.time())))
    for t in threads:
        t.join(timeout=180)
    s = sample(args.pid)
    s["t"] = round(time.time() - t0)
    samples.append(s)
    report = {
        "clients": args.clients,
        "seconds": args.seconds,
        "samples": samples,
        "requests": dict(sorted(stats.by_kind.items())),
        "total_requests": sum(stats.by_kind.values()),
        "server_errors_5xx": len(stats.server_errors),
        "transport_errors": dict(stats.errors),
        "clients_still_running": sum(t.is_alive() for t in threads),
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1))
    sys.exit(1 if stats.server_errors else 0)


if __name__ == "__main__":
    main()
