#!/usr/bin/env python3
"""A server written the way the seed assignment asks (seeds 000/001: a thread
per connection), used as an independent peer and as a benchmark baseline:

    python3 seed_server.py PORT DIR [--double] [--byte-by-byte] [--refuse REASON]

--double        require the double handshake (seed 001)
--byte-by-byte  send each accio\\r\\n one byte per TCP segment
--refuse        after reading each upload, store ERROR and answer "error REASON\\r\\n"
                (the failure report of the wire contract) before closing
Saves connection N's data as DIR/N.file, or ERROR after 10 s without data.
Prints "listening on PORT" on stderr once ready.
"""
import os
import signal
import socket
import sys
import threading
import time

TIMEOUT = 10


def send_command(conn, byte_by_byte):
    if byte_by_byte:
        for b in b"accio\r\n":
            conn.sendall(bytes([b]))
            time.sleep(0.02)
    else:
        conn.sendall(b"accio\r\n")


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed during handshake")
        data += chunk
    return data


def handle(conn, number, directory, double, byte_by_byte, refuse):
    path = os.path.join(directory, "%d.file" % number)
    try:
        conn.settimeout(TIMEOUT)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        send_command(conn, byte_by_byte)
        if double:
            if recv_exact(conn, 15) != b"confirm-accio\r\n":
                raise ConnectionError("bad confirm-accio")
            send_command(conn, byte_by_byte)
            if recv_exact(conn, 23) != b"confirm-accio-again\r\n\r\n":
                raise ConnectionError("bad confirm-accio-again")
        with open(path + ".part", "wb") as f:
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    break
                f.write(data)
        if refuse is not None:
            conn.sendall(b"error " + refuse.encode() + b"\r\n")
            raise ConnectionError("refused: " + refuse)
        os.rename(path + ".part", path)
    except Exception:  # noqa: BLE001 - any failure leaves ERROR, as the seed asks
        try:
            os.remove(path + ".part")
        except OSError:
            pass
        with open(path, "wb") as f:
            f.write(b"ERROR")
    finally:
        conn.close()


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    double = "--double" in sys.argv
    byte_by_byte = "--byte-by-byte" in sys.argv
    refuse = sys.argv[sys.argv.index("--refuse") + 1] if "--refuse" in sys.argv else None
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sys.stderr.write("listening on %d\n" % port)
    sys.stderr.flush()
    number = 0
    while True:
        conn, _ = sock.accept()
        number += 1
        threading.Thread(
            target=handle, args=(conn, number, directory, double, byte_by_byte, refuse), daemon=True
        ).start()


if __name__ == "__main__":
    main()
