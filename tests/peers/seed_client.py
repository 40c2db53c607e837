#!/usr/bin/env python3
"""A client written the way the seed assignment asks (seeds 002/003), used as an
independent peer: python3 seed_client.py HOST PORT FILE [--double] [--reset-after N]

--double       use the double handshake (seed 001)
--reset-after  after sending N bytes, abort with a TCP reset (SO_LINGER 0)
Exit 0 after a delivered file; ERROR: on stderr and exit 1 otherwise.
"""
import socket
import struct
import sys


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("server closed before the command")
        data += chunk
    return data


def expect(sock, command):
    got = recv_exact(sock, len(command))
    if got != command:
        raise ConnectionError("unexpected command %r" % got)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    double = "--double" in sys.argv
    reset_after = None
    if "--reset-after" in sys.argv:
        reset_after = int(sys.argv[sys.argv.index("--reset-after") + 1])
        args.remove(str(reset_after))
    host, port, path = args
    try:
        sock = socket.create_connection((host, int(port)), timeout=10)
        expect(sock, b"accio\r\n")
        if double:
            sock.sendall(b"confirm-accio\r\n")
            expect(sock, b"accio\r\n")
            sock.sendall(b"confirm-accio-again\r\n\r\n")
        sent = 0
        with open(path, "rb") as f:
            while True:
                chunk = f.read(10000)
                if not chunk:
                    break
                sock.sendall(chunk)
                sent += len(chunk)
                if reset_after is not None and sent >= reset_after:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
                    return 0
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass
        sock.close()
        return 0
    except Exception as e:  # noqa: BLE001 - the seed's "handle all errors"
        sys.stderr.write("ERROR: %s\n" % e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
