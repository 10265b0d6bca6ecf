"""The reference for figure 5: a bare asyncio echo over a Unix socket, same framing as
menda-credd (one JSON line in, one JSON line out, several requests per connection).

``python -m benchmarks.echo_server SOCKET`` prints ``ready`` once listening and serves
until SIGTERM or stdin closes. Each request line is parsed and answered with a canned
reply of the daemon's shape, so JSON costs are on both sides as in the real thing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

REPLY = (
    json.dumps(
        {
            "v": 1,
            "ok": True,
            "username": "aws",
            "password": "caat_" + "x" * 64,
            "expires_at": 1.0e9,
        },
        separators=(",", ":"),
    ).encode()
    + b"\n"
)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            json.loads(line)
            writer.write(REPLY)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def serve(path: str) -> None:
    server = await asyncio.start_unix_server(handle, path=path, limit=64 * 1024)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: os.read(sys.stdin.fileno(), 4096) or stop.set())
    print("ready", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
