# drydock's deploy proxy: the stable address of a deployed channel.
#
# Runs as `python3 -u -c <this file> serve PORT` in a container on the
# channel network, published on 127.0.0.1. Every new client connection is
# forwarded (plain TCP) to the current upstream, `host:port`, which drydock
# sets through a control port bound to 127.0.0.1 inside the container (only
# reachable with `docker exec`: `python3 -c <this file> ctl set HOST:PORT`).
# The upstream is also kept in a file so that a restarted proxy resumes.
# Connections already open keep their upstream: a switch only changes where
# new connections go, so in-flight requests finish on the old container.
# Connecting retries for up to RETRY_SECONDS, re-reading the upstream each
# time, so a client arriving while the upstream moves waits instead of failing.
import asyncio
import json
import os
import socket
import sys
import urllib.request

STATE_DIR = "/tmp/drydock-proxy"
UPSTREAM_FILE = STATE_DIR + "/upstream"
CONTROL_PORT = 9901
RETRY_SECONDS = 10.0

upstream = None
active = {}
served = {}


def load_upstream():
    try:
        with open(UPSTREAM_FILE) as f:
            text = f.read().strip()
        return text or None
    except OSError:
        return None


def save_upstream(value):
    os.makedirs(STATE_DIR, exist_ok=True)
    tmp = UPSTREAM_FILE + ".tmp"
    with open(tmp, "w") as f:
        f.write(value + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, UPSTREAM_FILE)


def split(target):
    host, _, port = target.rpartition(":")
    return host, int(port)


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        pass


async def handle(client_reader, client_writer):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RETRY_SECONDS
    delay = 0.02
    target = None
    up_reader = up_writer = None
    while True:
        target = upstream
        if target:
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*split(target)), 2.0
                )
                break
            except (OSError, asyncio.TimeoutError, ValueError):
                pass
        if loop.time() >= deadline:
            client_writer.close()
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)
    active[target] = active.get(target, 0) + 1
    served[target] = served.get(target, 0) + 1
    try:
        await asyncio.gather(
            pipe(client_reader, up_writer), pipe(up_reader, client_writer)
        )
    finally:
        active[target] -= 1
        for w in (up_writer, client_writer):
            try:
                w.close()
            except (OSError, RuntimeError):
                pass


async def control(reader, writer):
    global upstream
    try:
        line = (await reader.readline()).decode().strip()
        command, _, arg = line.partition(" ")
        if command == "set" and arg:
            split(arg)
            save_upstream(arg)
            upstream = arg
            reply = {"ok": True, "upstream": upstream}
        elif command == "status":
            reply = {"ok": True, "upstream": upstream, "active": active, "served": served}
        else:
            reply = {"ok": False, "error": "unknown command " + repr(line)}
    except Exception as e:  # report, never die
        reply = {"ok": False, "error": str(e)}
    writer.write((json.dumps(reply) + "\n").encode())
    await writer.drain()
    writer.close()


async def serve(port):
    global upstream
    upstream = load_upstream()
    server = await asyncio.start_server(handle, "0.0.0.0", port, backlog=1024)
    ctl = await asyncio.start_server(control, "127.0.0.1", CONTROL_PORT)
    print("drydock proxy on :%d, upstream %s" % (port, upstream), flush=True)
    async with server, ctl:
        await asyncio.gather(server.serve_forever(), ctl.serve_forever())


def ctl(words):
    with socket.create_connection(("127.0.0.1", CONTROL_PORT), timeout=5) as s:
        s.sendall((" ".join(words) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data)
    print(json.dumps(reply))
    return 0 if reply.get("ok") else 1


def probe(host, port, path):
    # Readiness of a candidate upstream, seen from the proxy's network.
    if path == "-":
        socket.create_connection((host, int(port)), timeout=3).close()
        print("tcp ok")
        return 0
    url = "http://%s:%s%s" % (host, port, path)
    with urllib.request.urlopen(url, timeout=3) as r:
        print("http", r.status)
        return 0 if 200 <= r.status < 400 else 1


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if mode == "serve":
        asyncio.run(serve(int(sys.argv[2])))
    elif mode == "ctl":
        sys.exit(ctl(sys.argv[2:]))
    elif mode == "probe":
        try:
            sys.exit(probe(sys.argv[2], sys.argv[3], sys.argv[4]))
        except Exception as e:
            print("probe failed:", e)
            sys.exit(1)
    else:
        sys.exit("usage: serve PORT | ctl set HOST:PORT | ctl status | probe HOST PORT PATH|-")
