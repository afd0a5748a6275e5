#!/usr/bin/env python3
"""What one stroke's commit script costs Redis, alone: the figure of docs/BENCHMARKS.md §6.3.

    loadtest/script-cost.py --server target/release/drawbridge \\
        [--config config/default.toml] [--loadtest target/release/loadtest] [--runs 3] [--out DIR]

Starts a private redis-server and one drawbridge instance of the given build on free loopback
ports, sends a few strokes with the generator while `MONITOR` records, and takes the last stroke's
`EVALSHA`. Then it stops the instance and replays that call 20,000 times with `redis-benchmark -c 1`
(the op id and stroke id made unique per call, the same id in every argument that holds it,
piped in with `redis-cli --pipe`; a run in which more than 0.1 % of the calls were not
committed is flagged), reading Redis's own
`INFO commandstats`: `EVALSHA` µs per call, and the Redis calls the script makes per stroke.
Nothing else shares that Redis, so queueing is out of the figure; `PUBLISH` has no subscriber.

Run it for two builds in turn (a few times each, alternating) to compare them; `--config` must be
the config/default.toml of the build's own commit (an older server refuses newer keys).
"""
import argparse
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time

import replay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def monitor_argv(line):
    """The arguments of one MONITOR line, unescaped."""
    body = line.split("]", 1)[1]

    def unescape(token):
        return re.sub(
            r"\\x([0-9a-fA-F]{2})|\\(.)",
            lambda m: chr(int(m.group(1), 16))
            if m.group(1)
            else {"n": "\n", "r": "\r", "t": "\t"}.get(m.group(2), m.group(2)),
            token,
        )

    return [unescape(t) for t in re.findall(r'"((?:[^"\\]|\\.)*)"', body)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True, help="drawbridge binary")
    ap.add_argument("--config", default=os.path.join(ROOT, "config/default.toml"))
    ap.add_argument("--loadtest", default=os.path.join(ROOT, "target/release/loadtest"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--out", help="keep MONITOR, the call and commandstats here")
    a = ap.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="script-cost-")
    os.makedirs(out, exist_ok=True)
    rp, ip = free_port(), free_port()
    secret = secrets.token_hex(32)
    procs = []

    def cli(*args):
        return subprocess.run(
            ["redis-cli", "-p", str(rp), *args], capture_output=True, text=True
        ).stdout

    try:
        procs.append(
            subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(rp), "--save", "",
                 "--appendonly", "no", "--logfile", os.path.join(out, "redis.log")]
            )
        )
        for _ in range(100):
            if cli("ping").strip() == "PONG":
                break
            time.sleep(0.1)
        env = dict(
            os.environ,
            DRAWBRIDGE_LISTEN=f"127.0.0.1:{ip}",
            DRAWBRIDGE_REDIS_URL=f"redis://127.0.0.1:{rp}",
            DRAWBRIDGE_JWT_SECRET=secret,
            DRAWBRIDGE_INSTANCE_ID="a",
            DRAWBRIDGE_WS_UPGRADES_PER_MINUTE="0",
            DRAWBRIDGE_UPGRADES_PER_SEC="0",
            DRAWBRIDGE_MAX_CONNECTIONS_PER_IP="0",
            DRAWBRIDGE_ROOM_RATE_LIMIT="0",
            DRAWBRIDGE_LOG="warn",
            DRAWBRIDGE_DRAIN_SECS="1",
            DRAWBRIDGE_CONFIG=a.config,
        )
        # Quotas high enough that every replayed run commits all its strokes (the default 8 MiB
        # per user is reached by the second run's 20,000 strokes). Older builds ignore these.
        for key, value in (("MAX_ROOM_ELEMENTS", 10_000_000), ("MAX_ROOM_BYTES", 1 << 40),
                           ("MAX_USER_BYTES", 1 << 40)):
            env["DRAWBRIDGE_" + key] = str(value)
        log = open(os.path.join(out, "drawbridge.log"), "w")
        instance = subprocess.Popen([a.server], env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(instance)
        for _ in range(150):
            try:
                socket.create_connection(("127.0.0.1", ip), 0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(1)
        monitor = subprocess.Popen(
            ["redis-cli", "-p", str(rp), "MONITOR"],
            stdout=open(os.path.join(out, "monitor.txt"), "w"),
        )
        procs.append(monitor)
        subprocess.run(
            [a.loadtest, "--url", f"ws://127.0.0.1:{ip}", "--connections", "2", "--rooms", "1",
             "--strokes-per-sec", "5", "--duration", "2s", "--warmup", "0", "--ramp-up", "0.2s",
             "--drain", "3s", "--quiet", "--jwt-secret", secret],
            capture_output=True,
        )
        for p in (monitor, instance):
            p.terminate()
            p.wait(timeout=20)
            procs.remove(p)
        calls = [
            monitor_argv(line)
            for line in open(os.path.join(out, "monitor.txt"))
            if '"evalsha"' in line.lower()
        ]
        strokes = [
            c for c in calls
            if any(replay.TAG.search(x) for x in c[3:]) and any('"points"' in x for x in c)
        ]
        if not strokes:
            sys.exit("no stroke commit seen in MONITOR; see " + out)
        call = strokes[-1]
        with open(os.path.join(out, "call.txt"), "w") as f:
            f.write("\n".join(call) + "\n")
        print(f"{a.server}: EVALSHA with {len(call) - 3} arguments, {sum(map(len, call))} bytes")
        for run in range(a.runs):
            cli("CONFIG", "RESETSTAT")
            subprocess.run(
                ["redis-cli", "-p", str(rp), "--pipe"],
                input=replay.stream(call, a.calls, f"r{run}"),
                capture_output=True,
            )
            stats = cli("INFO", "commandstats")
            with open(os.path.join(out, f"commandstats-{run}.txt"), "w") as f:
                f.write(stats)
            rows = re.findall(r"cmdstat_(\w+):calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)", stats)
            ev = next(r for r in rows if r[0] == "evalsha")
            n = int(ev[1])
            inner = ", ".join(
                f"{name} {int(c) / n:.2f}x {per} us" for name, c, _, per in rows
                if name != "evalsha" and int(c) >= n // 2
            )
            published = sum(int(c) for name, c, _, _ in rows if name == "publish")
            # Every id is new: fewer publications than calls means some were not committed.
            note = "" if published >= n * 0.999 else f" [only {published} committed: not a figure]"
            print(f"  run {run}: EVALSHA {ev[3]} us/call over {n} calls; inside: {inner}{note}")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
