#!/usr/bin/env python3
"""A TCP proxy on loopback whose backend can be moved, for scripts/chaos.sh: what instances see
when Redis fails over behind a virtual IP, a DNS name or a proxy that follows Sentinel.

    tcp-switch.py <listen port> <target file>

Each new connection goes to the port written in <target file>. SIGUSR1 cuts every connection
open now (as moving a VIP does), so clients reconnect and land on the current target. Stops on
SIGTERM/SIGINT.
"""
import asyncio
import signal
import sys


async def main(listen_port: int, target_file: str) -> None:
    open_now: set[asyncio.StreamWriter] = set()

    def cut() -> None:
        for w in list(open_now):
            w.transport.abort()
        open_now.clear()

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.transport.abort()

    async def serve(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            with open(target_file) as f:
                port = int(f.read().strip())
            sr, sw = await asyncio.open_connection("127.0.0.1", port)
        except (OSError, ValueError):
            cw.transport.abort()
            return
        open_now.update((cw, sw))
        try:
            await asyncio.gather(pipe(cr, sw), pipe(sr, cw))
        except asyncio.CancelledError:
            pass
        open_now.discard(cw)
        open_now.discard(sw)

    server = await asyncio.start_server(serve, "127.0.0.1", listen_port)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, cut)
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, lambda: stop.done() or stop.set_result(None))
    async with server:
        await stop


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
