#!/usr/bin/env python3
"""A hostile local process: for SECONDS, over and over, moves FILE-DIR/sub aside (it stays
inside FILE-DIR, as moved<i>) and puts a symbolic link to OUTSIDE in its place, then undoes it.
Prints how many swaps it made. Usage: swapper.py FILE-DIR OUTSIDE SECONDS"""
import os
import sys
import time

root, outside, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
sub = os.path.join(root, "sub")
end = time.monotonic() + seconds
swaps = 0
attempts = 0


def quietly(action, *args):
    try:
        action(*args)
        return True
    except OSError:
        return False


while time.monotonic() < end:
    attempts += 1
    moved = os.path.join(root, f"moved{attempts}")
    if quietly(os.rename, sub, moved) and quietly(os.symlink, outside, sub):
        swaps += 1
        time.sleep(0.0005)
        quietly(os.unlink, sub)
        # The server may have made a new sub meanwhile; then the moved one stays aside.
        quietly(os.rename, moved, sub)
    else:
        quietly(os.mkdir, sub)
        time.sleep(0.0002)
print(swaps)
