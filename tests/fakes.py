"""Small misbehaving echo servers for testing the load generator.

    python tests/fakes.py MODE [--every K] [--stall-after N]

MODE is one of: drop (no reply), duplicate (two replies), corrupt (one byte changed), error
(an "error:" reply instead), empty (the reply, then an empty datagram), stall (the 201st
datagram waits 200 ms before anything else is read; once), echo (none of that). The
misbehaviour hits requests whose sequence number (from the generator's header) is K-1 modulo
K, so the expected counts are known exactly; the generator's probe (client ffff) is always
answered properly. Prints a ready line, and on SIGTERM a line of its own counts.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servers.protocol import respond  # noqa: E402

PROBE_CLIENT = b"ffff"


def main() -> None:
    parser = argparse.ArgumentParser()
    modes = ("echo", "drop", "duplicate", "corrupt", "error", "empty", "stall")
    parser.add_argument("mode", choices=modes)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--stall-after", type=int, default=200)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    counts = dict.fromkeys(("received", "misbehaved"), 0)

    def stop(*_: object) -> None:
        print(json.dumps({"event": "stopped", **counts}), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(json.dumps({"event": "ready", "host": "127.0.0.1", "port": sock.getsockname()[1]}))
    sys.stdout.flush()
    stalled = False
    while True:
        datagram, address = sock.recvfrom(2048)
        reply, _ = respond(datagram)
        if datagram.startswith(PROBE_CLIENT):
            sock.sendto(reply, address)
            continue
        counts["received"] += 1
        try:
            hit = int(datagram[4:14], 16) % args.every == args.every - 1
        except ValueError:
            hit = False
        if args.mode == "stall":
            if not stalled and counts["received"] > args.stall_after:
                stalled = True
                counts["misbehaved"] += 1
                time.sleep(0.2)
            sock.sendto(reply, address)
        elif not hit or args.mode == "echo":
            sock.sendto(reply, address)
        else:
            counts["misbehaved"] += 1
            if args.mode == "duplicate":
                sock.sendto(reply, address)
                sock.sendto(reply, address)
            elif args.mode == "corrupt":
                sock.sendto(reply[:-1] + b"#", address)
            elif args.mode == "error":
                sock.sendto(b"error: refused by the fake", address)
            elif args.mode == "empty":
                sock.sendto(reply, address)
                sock.sendto(b"", address)
            # drop: nothing at all


if __name__ == "__main__":
    main()
