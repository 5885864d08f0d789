"""The subscriptions app under a crowd with a slow email provider (issue 14).

``crisiscomms subscriptions`` runs in its own process against the SendGrid emulator (in
another) answering every Mail Send in ``--latency-ms`` (2,000 by default); SQLite holds the
subscribers, ``--pairs`` of them already confirmed. Measured, same run:

- ``subscribe_per_s``: accepted (202) subscribe requests per second, ``--concurrency``
  keep-alive clients posting new addresses as fast as they are answered for ``--seconds``, with
  the provider answering in 2 s; the baseline ``subscribe_per_s_fast_provider`` is the same
  load with the provider answering at once, and ``ratio_vs_fast_provider`` their ratio (1.0:
  the provider's latency costs the request path nothing);
- ``unrelated_p99_ms``: p99 latency of an unrelated request (a reader opening their
  unsubscribe page, a database read and a rendered page) sent every 20 ms during that load;
  ``unrelated_p99_idle_ms`` the same prober alone for ``--idle-s`` first (the baseline);
- ``unrelated_p99_ms_at_held_rate``: the same probe while the same clients hold
  ``--held-per-s`` (500) subscribe requests a second, paced, provider still slow. At
  saturation every request, the probe's too, queues behind the ``--concurrency`` in flight
  (Little's law: 32 / 2,000 per second is 16 ms per turn of the event loop; the probe's
  page needs two: its bytes arrive in one, its task runs in the next, the database read
  done on the loop on SQLite); at a held rate what is left is the server's own stalls;
- ``timing_gap_median_ms``: |median(new address) - median(confirmed address)| over
  ``--pairs`` interleaved subscribe requests, one at a time, provider still slow;
- the server's peak RSS before and after two ``--huge-mb`` (150) MB subscribe POSTs, one with
  ``Content-Length``, one chunked, with the status each got and how much of it the server
  let the client send before answering.

The load generator is :mod:`_loadgen` (requests serialised before the clock starts, a few
microseconds of client work each: ``loadgen_cpu_ms_per_subscribe`` says how much), and the
prober a process of its own on the standard library's ``http.client``, so what is measured is
the server, not the clients sharing its two cores (an httpx crowd spent more CPU per request
than the server did). ``server_cpu_ms_per_subscribe`` is the server's CPU (request, queue,
database, rendering, sending) per accepted request. The load averages before and after are
printed: on a shared machine they explain more of a p99 than the code does.

Rate limits are lifted for the run (one client sends everything). Confirmation emails drain
at ``subscribe_senders / latency`` per second meanwhile (``confirmations_sent``).

    uv run python bench/subscriptions.py [--seconds 10] [--requests 50000] [--concurrency 32]
                                         [--pairs 200] [--latency-ms 2000] [--held-per-s 500]
                                         [--idle-s 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, EmulatorProcess, base_env, emit, process, workdir
from _loadgen import fire, serialise

from crisiscomms.audience.models import Recipient
from crisiscomms.core.database import init_db, make_engine
from crisiscomms.testing.pgcluster import free_port

HOST = "127.0.0.1"


def seed_confirmed(db_url: str, n: int) -> list[tuple[str, str]]:
    """``n`` confirmed subscribers; their (address, unsubscribe token)."""
    from sqlmodel import Session

    engine = make_engine(db_url)
    init_db(engine)
    with Session(engine) as session:
        rows = [Recipient(email=f"known{i}@example.org", consent=True) for i in range(n)]
        session.add_all(rows)
        session.commit()
        found = [(r.email, str(r.unsubscribe_token)) for r in rows]
    engine.dispose()
    return found


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


PROBE = """
import http.client, json, select, sys, time
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = []
connection = http.client.HTTPConnection(host, port, timeout=60)
print("ready", flush=True)
sys.stdin.readline()
while True:
    t0 = time.perf_counter()
    connection.request("GET", path)
    answer = connection.getresponse()
    answer.read()
    out.append((time.perf_counter() - t0) * 1000)
    assert answer.status == 200, answer.status
    if select.select([sys.stdin], [], [], 0.02)[0]:
        break
print(json.dumps(out), flush=True)
"""


class Probe:
    """A reader opening their unsubscribe page every 20 ms on a keep-alive connection, from a
    process of its own with the standard library's lean client (so neither the load
    generator's work nor a heavy client's is counted in its latency)."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", PROBE, host, str(port), path],
                                     text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def start(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def stop(self) -> list[float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        found: list[float] = json.loads(self.proc.stdout.readline())
        self.proc.wait(timeout=30)
        return found


def idle_probes(port: int, token: str, seconds: float) -> list[float]:
    """The probe alone for ``seconds``: the baseline of ``unrelated_p99_ms``."""
    probe = Probe(HOST, port, f"/v1/unsubscribe/{token}")
    probe.start()
    time.sleep(seconds)
    return probe.stop()


def subscribe_wire(port: int, tag: str, requests: int) -> list[bytes]:
    """``requests`` form posts of new addresses, serialised before the clock starts."""
    return [serialise(HOST, port, "/v1/subscribe",
                      urlencode({"email": f"{tag}{i}@example.org"}).encode(),
                      {"content-type": "application/x-www-form-urlencoded"})
            for i in range(requests)]


def crowd(port: int, tag: str, requests: int, seconds: float, concurrency: int, token: str,
          server_pid: int, per_s: float | None = None) -> dict[str, Any]:
    """Subscribe new addresses from ``concurrency`` keep-alive clients for ``seconds`` (at
    most ``requests``; :mod:`_loadgen`: microseconds of client work per request) while the
    probe opens an unsubscribe page every 20 ms; 202s per second, the probe's latencies (ms),
    statuses, and the CPU the server and this process spent per request."""
    wire = subscribe_wire(port, tag, requests)
    probe = Probe(HOST, port, f"/v1/unsubscribe/{token}")
    probe.start()
    server_cpu, own_cpu = cpu_seconds(server_pid), time.process_time()
    took, _, statuses = asyncio.run(fire(HOST, port, wire, concurrency, seconds=seconds,
                                         per_s=per_s))
    server_cpu, own_cpu = cpu_seconds(server_pid) - server_cpu, time.process_time() - own_cpu
    requests = sum(statuses.values())
    probes = probe.stop()
    return {"per_s": statuses.get(202, 0) / took, "probes": probes, "statuses": statuses,
            "server_cpu_ms": server_cpu * 1000 / requests,
            "loadgen_cpu_ms": own_cpu * 1000 / requests}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timing_pairs(base: str, known: list[tuple[str, str]], pairs: int) -> dict[str, float]:
    new_ms: list[float] = []
    known_ms: list[float] = []
    with httpx.Client(base_url=base, timeout=60) as client:
        for i in range(pairs):
            for address, out in ((f"timing{i}@example.org", new_ms),
                                 (known[i % len(known)][0], known_ms)):
                t0 = time.perf_counter()
                answer = client.post("/v1/subscribe", data={"email": address})
                out.append((time.perf_counter() - t0) * 1000)
                assert answer.status_code == 202, answer.status_code
    new, old = statistics.median(new_ms), statistics.median(known_ms)
    return {"timing_gap_median_ms": round(abs(new - old), 3),
            "new_median_ms": round(new, 3), "confirmed_median_ms": round(old, 3)}


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (``VmHWM``), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def huge_posts(base: str, megabytes: int) -> dict[str, Any]:
    """A ``megabytes`` MB subscribe POST twice: declared (``Content-Length``) and chunked;
    the status each got (the body is sent until the server answers or closes)."""
    import socket

    host, port = base.removeprefix("http://").split(":")
    size = megabytes * 1024 * 1024
    chunk = b"a" * 65536
    out: dict[str, Any] = {}
    for name, head in (("declared", f"Content-Length: {size}\r\n"),
                       ("chunked", "Transfer-Encoding: chunked\r\n")):
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.sendall(("POST /v1/subscribe HTTP/1.1\r\nHost: x\r\n"
                          "Content-Type: application/x-www-form-urlencoded\r\n"
                          f"{head}\r\n").encode())
            sent = 0
            try:
                while sent < size:
                    part = chunk if name == "declared" else \
                        f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                    sock.sendall(part)
                    sent += len(chunk)
            except OSError:
                pass  # the server answered and closed: the rest is never read
            try:
                status = sock.recv(64).split(b" ")[1].decode()
            except (OSError, IndexError):
                status = "closed"
        out[f"huge_post_{name}_status"] = status
        out[f"huge_post_{name}_sent_mb"] = round(sent / 1024 / 1024, 1)
    return out


def control(call: Any, *args: Any, **kwargs: Any) -> Any:
    """An emulator control call, retried once: its keep-alive connection may have been
    closed by the emulator while the crowd ran (httpx.ReadError on reuse)."""
    try:
        return call(*args, **kwargs)
    except httpx.TransportError:
        return call(*args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="how long each crowd posts")
    parser.add_argument("--requests", type=int, default=50_000,
                        help="at most this many subscribe requests per crowd")
    parser.add_argument("--idle-s", type=float, default=5.0,
                        help="how long the probe runs alone first (the baseline)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--held-per-s", type=float, default=500.0,
                        help="the held (paced) subscribe load of the *_at_held_rate figures")
    parser.add_argument("--latency-ms", type=float, default=2000.0)
    parser.add_argument("--huge-mb", type=int, default=150,
                        help="size of the oversized POSTs sent at the end")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    load_before = round(os.getloadavg()[0], 2)
    work = workdir()
    db_url = f"sqlite:///{work / 'subscriptions.db'}"
    known = seed_confirmed(db_url, max(1, args.pairs))
    token = known[0][1]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with EmulatorProcess() as emulators:
        env = {**base_env(work, db_url, emulators),
               "CRISISCOMMS_SUBSCRIPTIONS_URL": base, "CRISISCOMMS_HTTP_TIMEOUT_S": "30",
               "CRISISCOMMS_SUBSCRIBE_CLIENT_BURST": "100000000",
               "CRISISCOMMS_SUBSCRIBE_MAILBOX_BURST": "100000000",
               "CRISISCOMMS_SUBSCRIBE_QUEUE_MAX": str(10 * (args.requests + args.pairs))}
        env = {**os.environ, **env}
        command = [str(Path(sys.executable).parent / "crisiscomms"), "subscriptions",
                   "--port", str(port)]
        with process(command, env, work / "subscriptions.log") as server:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                        httpx.get(f"{base}/v1/unsubscribe/{token}", timeout=30)  # warm
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit((work / "subscriptions.log").read_text())
                time.sleep(0.1)
            idle = idle_probes(port, token, args.idle_s)
            control(emulators.faults, "sendgrid", latency_ms=0)
            fast = crowd(port, "fast", args.requests, args.seconds, args.concurrency, token,
                         server.pid)
            control(emulators.faults, "sendgrid", latency_ms=args.latency_ms)
            slow = crowd(port, "slow", args.requests, args.seconds, args.concurrency, token,
                         server.pid)
            held = crowd(port, "held", args.requests, args.seconds, args.concurrency, token,
                         server.pid, per_s=args.held_per_s)
            timing = timing_pairs(base, known, args.pairs)
            rss_before = peak_rss_mb(server.pid)
            huge = huge_posts(base, args.huge_mb)
            rss_after = peak_rss_mb(server.pid)
            sent = int(control(emulators.stats, "sendgrid").get("requests", 0) or 0)
            control(emulators.faults, "sendgrid", latency_ms=0)  # drain the backlog at exit
    probes, statuses = slow["probes"], slow["statuses"]
    report: dict[str, Any] = {
        "subscribe_per_s": round(slow["per_s"], 1),
        "unrelated_p99_ms": round(p99(probes), 2),
        "timing_gap_median_ms": timing["timing_gap_median_ms"],
        "subscribe_per_s_fast_provider": round(fast["per_s"], 1),
        "ratio_vs_fast_provider": round(slow["per_s"] / fast["per_s"], 3) if fast["per_s"]
        else None,
        "unrelated_p99_idle_ms": round(p99(idle), 2),
        "unrelated_p50_ms": round(statistics.median(probes), 2),
        "unrelated_p50_idle_ms": round(statistics.median(idle), 2),
        "unrelated_max_ms": round(max(probes), 2),
        "unrelated_probes": len(probes), "unrelated_idle_probes": len(idle),
        "held_subscribe_per_s": round(held["per_s"], 1),
        "unrelated_p99_ms_at_held_rate": round(p99(held["probes"]), 2),
        "unrelated_p50_ms_at_held_rate": round(statistics.median(held["probes"]), 2),
        "unrelated_probes_at_held_rate": len(held["probes"]),
        "server_cpu_ms_per_subscribe": round(slow["server_cpu_ms"], 3),
        "loadgen_cpu_ms_per_subscribe": round(slow["loadgen_cpu_ms"], 3),
        "new_median_ms": timing["new_median_ms"],
        "confirmed_median_ms": timing["confirmed_median_ms"],
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "provider_latency_ms": args.latency_ms,
        "requests": sum(statuses.values()), "seconds": args.seconds,
        "concurrency": args.concurrency, "pairs": args.pairs,
        "confirmations_sent": sent,
        "server_peak_rss_mb_before_huge_posts": rss_before,
        "server_peak_rss_mb_after_huge_posts": rss_after, **huge,
        "load_avg_1m_before": load_before, "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "workspace": str(ROOT),
    }
    emit(report, args.json)


if __name__ == "__main__":
    main()
