#!/usr/bin/env python3
"""Feeds a named pipe without end, for uploads that must still be running when
a test interrupts them: python3 feed_fifo.py SOURCE FIFO [--pause SECONDS]

Writes SOURCE's bytes into FIFO again and again, printing "fed N" on stdout
after the N-th copy, until the reader goes away (then exits 0). --pause sleeps
that long after each 64 KiB, so that many feeders do not take all the CPU.
"""
import sys
import time

CHUNK = 64 * 1024


def main():
    source, fifo = sys.argv[1], sys.argv[2]
    pause = float(sys.argv[sys.argv.index("--pause") + 1]) if "--pause" in sys.argv else 0.0
    with open(source, "rb") as f:
        data = f.read()
    copies = 0
    try:
        with open(fifo, "wb", buffering=0) as out:
            while True:
                for start in range(0, len(data), CHUNK):
                    view = memoryview(data)[start:start + CHUNK]
                    while view:
                        view = view[out.write(view):]
                    if pause:
                        time.sleep(pause)
                copies += 1
                print("fed %d" % copies, flush=True)
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
