#!/usr/bin/env python3
"""Slow, hostile clients of the webhook (scripts/bench-slow-clients.sh).

Opens CONNS TLS connections to HOST:PORT; each sends the headers of a POST with a
Content-Length of BODY bytes, then the body minus its last byte as fast as the server reads
it, then stays idle. When the server closes a connection, it is opened again (the attack
goes on). The first connections are spread over RAMP seconds. Runs SECONDS seconds, then
prints one line of counts as JSON.
"""
import asyncio
import json
import ssl
import sys

HOST, PORT, CONNS, BODY, SECONDS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
RAMP = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])

stats = {"opened": 0, "open_failed": 0, "closed_by_server": 0, "answers": {}, "bytes_sent": 0, "open_at_end": 0, "most_open_at_once": 0}
open_now = 0
CHUNK = b" " * 65536


async def one(stop, delay):
    global open_now
    # Spread the first handshakes over RAMP seconds: one Python thread cannot complete 1,000
    # TLS handshakes at once within the webhook's handshake timeout.
    await asyncio.sleep(delay)
    while not stop.is_set():
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, PORT, ssl=ctx), 30)
        except Exception as e:
            stats["open_failed"] += 1
            kind = type(e).__name__
            stats.setdefault("open_errors", {})[kind] = stats.setdefault("open_errors", {}).get(kind, 0) + 1
            await asyncio.sleep(0.05)
            continue
        stats["opened"] += 1
        open_now += 1
        stats["most_open_at_once"] = max(stats["most_open_at_once"], open_now)
        try:
            writer.write(
                f"POST /validate/workloads HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n".encode()
            )
            left = BODY - 1
            while left > 0 and not stop.is_set():
                n = min(left, len(CHUNK))
                writer.write(CHUNK[:n])
                await writer.drain()
                left -= n
                stats["bytes_sent"] += n
            # Idle with the last byte held back until the server gives up (or the run ends).
            read = asyncio.ensure_future(reader.read(4096))
            done, _ = await asyncio.wait({read, asyncio.ensure_future(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
            if read in done:
                data = read.result()
                status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
                stats["answers"][status] = stats["answers"].get(status, 0) + 1
                stats["closed_by_server"] += 1
            else:
                read.cancel()
        except Exception:
            stats["closed_by_server"] += 1
        finally:
            open_now -= 1
            writer.close()


async def main():
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(one(stop, RAMP * i / CONNS)) for i in range(CONNS)]
    await asyncio.sleep(SECONDS)
    stats["open_at_end"] = open_now
    stop.set()
    await asyncio.wait(tasks, timeout=10)
    print(json.dumps(stats))


asyncio.run(main())
