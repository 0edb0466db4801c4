#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# A TCP proxy on loopback that makes one signer host's link to etcd slow on demand:
#   slowproxy.py CONTROL_FILE LISTEN_PORT:TARGET_PORT [...]
# While CONTROL_FILE exists, every chunk in either direction waits DELAY_MS (default 800)
# before it is forwarded. Prints "ready" once every port listens. Stops on SIGTERM.
import asyncio, os, signal, sys

DELAY = int(os.environ.get("DELAY_MS", "800")) / 1000.0
CONTROL = sys.argv[1]


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if os.path.exists(CONTROL):
                await asyncio.sleep(DELAY)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


def handler(target):
    async def on_conn(cr, cw):
        try:
            tr, tw = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, tw), pipe(tr, cw))
    return on_conn


async def main():
    servers = []
    for spec in sys.argv[2:]:
        lp, tp = (int(x) for x in spec.split(":"))
        servers.append(await asyncio.start_server(handler(tp), "127.0.0.1", lp))
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


asyncio.run(main())
