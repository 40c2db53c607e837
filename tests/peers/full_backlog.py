#!/usr/bin/env python3
"""A listener that never accepts, with its accept queue filled, so the kernel
drops further SYNs and a connect to it hangs: python3 full_backlog.py PORT
Prints "ready" on stdout once filled; runs until killed."""
import socket
import sys
import time

port = int(sys.argv[1])
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(0)
fillers = []
for _ in range(8):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(("127.0.0.1", port))
        fillers.append(s)
    except OSError:
        break  # this SYN was dropped: the queue is full
print("ready %d" % len(fillers), flush=True)
time.sleep(600)
