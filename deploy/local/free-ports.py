#!/usr/bin/env python3
"""Prints COUNT distinct free TCP ports on HOST (default 127.0.0.1), one per line.

All sockets are bound to port 0 at the same time, so the kernel hands out COUNT different
ports, then closed. The caller binds them right after; deploy/local/cluster.sh retries a node
whose port was taken in between.
Usage: free-ports.py COUNT [HOST]
"""
import socket
import sys


def main() -> int:
    if len(sys.argv) not in (2, 3) or not sys.argv[1].isdigit():
        print(__doc__.strip(), file=sys.stderr)
        return 2
    count, host = int(sys.argv[1]), (sys.argv[2] if len(sys.argv) == 3 else "127.0.0.1")
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            s.bind((host, 0))
            sockets.append(s)
        for s in sockets:
            print(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
