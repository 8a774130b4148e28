#!/usr/bin/env python3
"""A drain measured from the clients' side (issue 14): N WebSockets to a
revurb started with REVERB_DRAIN_WINDOW=W, then SIGTERM; when each client
gets its 4200, how many in each second and in the densest 10 ms, what /up
and a new upgrade get half-way through, and when the server exits.

    benches/drain.py N W BINARY        (make bench-drain: 5000 over 5 s)

Python's selector loop reads in batches, so the densest 10 ms is an upper
bound of what the server sent (it closes at most 50 ms of its schedule per
loop turn). Prints one line; exits 1 unless every client got its 4200 and
the server exited 0.
"""
import selectors
import signal
import socket
import subprocess
import sys
import time

N, WINDOW, BIN = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
env = {"REVERB_APP_ID": "app-id", "REVERB_APP_KEY": "app-key", "REVERB_APP_SECRET": "app-secret",
       "REVERB_METRICS_PORT": "0", "REVERB_DRAIN_WINDOW": sys.argv[2]}
srv = subprocess.Popen([BIN, "start", "--host", "127.0.0.1", "--port", "0"], env=env,
                       stdout=subprocess.PIPE)
port = int(srv.stdout.readline().decode().rsplit(":", 1)[1].split()[0])
UPGRADE = (b"GET /app/app-key HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def status_line(request):
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(request)
    line = c.recv(4096).split(b"\r\n", 1)[0].decode()
    c.close()
    return line


socks = []
for _ in range(N):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(UPGRADE)
    socks.append(s)
for s in socks:
    buf = b""
    while b"connection_established" not in buf:
        buf += s.recv(4096)
    s.setblocking(False)
sel = selectors.DefaultSelector()
for i, s in enumerate(socks):
    sel.register(s, selectors.EVENT_READ, i)

t0 = time.monotonic()
srv.send_signal(signal.SIGTERM)
closed = {}
probes = None
while len(closed) < N and time.monotonic() - t0 < WINDOW + 10:
    if probes is None and time.monotonic() - t0 > WINDOW / 2:
        probes = (status_line(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n"), status_line(UPGRADE))
    for key, _ in sel.select(timeout=0.05):
        try:
            data = key.fileobj.recv(65536)
        except (BlockingIOError, ConnectionResetError):
            continue
        if b"4200" in data and key.data not in closed:
            closed[key.data] = time.monotonic() - t0
        if not data or key.data in closed:
            sel.unregister(key.fileobj)
            key.fileobj.close()  # as a Pusher client does on 4200
rc = srv.wait(timeout=30)
exited = time.monotonic() - t0
ts = sorted(closed.values())
buckets = {}
for t in ts:
    buckets[int(t * 100)] = buckets.get(int(t * 100), 0) + 1
per_second = [sum(1 for t in ts if int(t) == k) for k in range(int(WINDOW) + 1)]
print(f"drain of {N} over {WINDOW:g} s: {len(ts)} got 4200, first at {ts[0] * 1000:.1f} ms, "
      f"last at {ts[-1] * 1000:.1f} ms, per second {per_second}, at most {max(buckets.values())} "
      f"in 10 ms; half-way /up: {probes[0] if probes else '-'}, upgrade: {probes[1] if probes else '-'}; "
      f"exit {rc} after {exited:.2f} s")
sys.exit(0 if len(ts) == N and rc == 0 else 1)
