#!/usr/bin/env python3
"""What one stroke's commit script costs Redis, in instructions: a figure that does not move
with the machine's load, for docs/BENCHMARKS.md §9.1.

    loadtest/script-cost.py --server BIN --config CFG --runs 1 --out DIR     # captures DIR/call.txt
    loadtest/script-instructions.py --call DIR/call.txt --rev HEAD [--calls 2000]

Runs a private redis-server under valgrind's callgrind, counting only inside `evalShaCommand`;
loads the room script of git revision `--rev` (lua/prelude.lua + lua/apply.lua, as the gateway
concatenates them), creates the captured call's room, and replays the call `2 × --calls` times
with a fresh op id and stroke id each (as script-cost.py does). Prints instructions per call.
`script-cost.py` gives the time a call takes; this gives what the time is made of, and tells two
versions of a script apart on a busy machine, where timings cannot.
"""
import argparse
import glob
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

import replay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = "src/engine/redis/lua"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--call", required=True, help="call.txt written by script-cost.py --out")
    ap.add_argument("--rev", default="HEAD", help="git revision whose apply.lua is loaded")
    ap.add_argument("--calls", type=int, default=2000)
    a = ap.parse_args()
    call = open(a.call).read().split("\n")[:-1]
    script = "".join(
        subprocess.run(["git", "-C", ROOT, "show", f"{a.rev}:{LUA}/{f}"], check=True,
                       capture_output=True, text=True).stdout
        for f in ("prelude.lua", "apply.lua")
    )
    out = tempfile.mkdtemp(prefix="script-instructions-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p",
         "--collect-atstart=no", "--toggle-collect=evalShaCommand",
         "redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--logfile", os.path.join(out, "redis.log")],
        stderr=subprocess.DEVNULL,
    )

    def cli(*args, data=None):
        return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                              input=data, text=data is None).stdout

    try:
        for _ in range(300):
            if cli("ping").strip() == "PONG":
                break
            time.sleep(0.1)
        sha = cli("SCRIPT", "LOAD", script).strip()
        # The room as creation leaves it. The board model's scripts (more than six keys) keep a
        # placeholder field in the board and idempotency hashes; v1's board was a list.
        cli("HSET", call[3], "seq", "0", "createdAt", "1")
        if int(call[2]) > 6:
            cli("HSET", call[4], "", "")
            cli("HSET", call[7], "", "")
        cli("--pipe", data=replay.stream(call, 2 * a.calls, "r", sha))
        stats = cli("INFO", "commandstats")
    finally:
        server.terminate()
        server.wait()
    published = re.search(r"cmdstat_publish:calls=(\d+)", stats)
    failed = re.search(r"cmdstat_evalsha:calls=\d+,.*failed_calls=(\d+)", stats)
    total = 0
    for path in glob.glob(f"{out}/cg.*"):
        for line in open(path):
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    n = 2 * a.calls
    if not published or int(published.group(1)) < n or (failed and int(failed.group(1))):
        sys.exit(f"not every call committed (see {out}); not a figure")
    print(f"{a.rev}: {total / n:,.0f} instructions per EVALSHA over {n} calls")


if __name__ == "__main__":
    main()
