#!/usr/bin/env python3
"""Memory and shutdown of the quickstart under stalled request heads (issue 14, item 4).

Starts the quickstart binary, opens N connections that each send SIZE bytes of an unfinished
request head and then nothing, and prints the server's VmRSS before and after, how many
connections the server closed (431 for a head over 64 KiB, or the header read timeout), and how
long it took to exit after SIGTERM.

    cargo build --all-features --examples
    python3 benches/stalled_heads.py target/debug/examples/quickstart 100 380000
    python3 benches/stalled_heads.py target/debug/examples/quickstart 100 60000

Figures in BENCHMARKS.md ("Quickstart: stalled request heads").
"""
import socket, subprocess, sys, time, re
binary, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
p = subprocess.Popen([binary, "--addr", "127.0.0.1:0"] + sys.argv[4:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
addr = None
for line in p.stdout:
    if line.startswith("listening on http://"):
        addr = line.strip()[len("listening on http://"):]; break
host, port = addr.rsplit(":", 1)
def rss():
    return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{p.pid}/status").read()).group(1)) / 1024
time.sleep(0.5); before = rss()
socks = []
for i in range(n):
    s = socket.create_connection((host, int(port)))
    s.sendall(b"GET /pets HTTP/1.1\r\nHost: x\r\n" + b"x-filler: " + b"a" * size)
    socks.append(s)
time.sleep(2); during = rss()
time.sleep(12); after = rss()
closed = 0
for s in socks:
    s.setblocking(False)
    try:
        d = s.recv(100)
        if d == b"" or d.startswith(b"HTTP/1.1 431"): closed += 1
    except BlockingIOError: pass
    except ConnectionResetError: closed += 1
p.terminate(); t0 = time.time()
try:
    p.wait(timeout=20); took = f"{time.time() - t0:.1f} s"
except subprocess.TimeoutExpired:
    took = "still running 20 s later"; p.kill()
print(f"{binary.split('/')[-1]}: {n} heads of {size} B: RSS before {before:.1f} MiB, 2 s later {during:.1f} MiB, 14 s later {after:.1f} MiB; closed by server {closed}/{n}; exit after SIGTERM: {took}")
