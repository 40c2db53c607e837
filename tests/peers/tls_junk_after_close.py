#!/usr/bin/env python3
"""A hostile TLS peer: handshake, a few bytes, then MODE (`close`: TLS close_notify; `bad-record`: a
forged record that cannot be decrypted), then random bytes as fast as the server takes them, for
SECONDS, without a FIN. usage: tls_junk_after_close.py PORT SECONDS CAFILE MODE"""
import os, socket, ssl, sys, time

port, seconds, cafile, mode = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile=cafile)
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
while True:
    try:
        tls.do_handshake()
        sock.sendall(outgoing.read())
        break
    except ssl.SSLWantReadError:
        pending = outgoing.read()
        if pending:
            sock.sendall(pending)
        incoming.write(sock.recv(65536))
# The server's accio\r\n: its handshake is done, so what follows is the upload's stream, not the handshake.
greeting = b""
while len(greeting) < 7:
    try:
        greeting += tls.read(7 - len(greeting))
    except ssl.SSLWantReadError:
        incoming.write(sock.recv(65536))
tls.write(b"payload")
if mode == "close":
    try:
        tls.unwrap()
    except ssl.SSLWantReadError:
        pass
    sock.sendall(outgoing.read())
else:
    sock.sendall(outgoing.read())
    sock.sendall(bytes([0x17, 0x03, 0x03, 0x40, 0x00]) + os.urandom(0x4000))
junk, sent, started = os.urandom(65536), 0, time.time()
sock.settimeout(0.5)
while time.time() - started < seconds:
    try:
        sock.sendall(junk)
        sent += len(junk)
    except socket.timeout:
        pass
    except OSError:
        break
print(f"sent {sent >> 20} MiB after the {mode}", flush=True)
sock.close()
