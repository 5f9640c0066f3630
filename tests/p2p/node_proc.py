"""A p2p node in its own process, for the multi-process and network-namespace tests.

    python tests/p2p/node_proc.py --seed HEX --listen HOST:PORT [--persistent ID@HOST:PORT]...

Prints one JSON object a line on stdout: {"ready": port, "id": hex} first, then
{"connected": id, "addr": host}, {"disconnected": id, "reason": ...} and
{"received": hex, "from": id, "channel": n}. Reads commands on stdin:
"broadcast <channel> <hex>" and "quit".
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import trio

from p2p import (
    Host,
    HostConfig,
    NodeKey,
    PeerConnected,
    PeerDisconnected,
    PeerPolicy,
    Received,
    parse_peer_address,
)

CONFIG = HostConfig(
    policy=PeerPolicy(backoff_base=0.05, backoff_max=0.5, ban_seconds=60.0),
    pex_interval=0.3,
    handshake_timeout=3.0,
    idle_timeout=5.0,
    stale_probe_seconds=0.3,
)


def emit(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    key = NodeKey.from_seed(bytes.fromhex(args.seed))
    host_text, _, port_text = args.listen.rpartition(":")
    async with Host.open(key, (host_text, int(port_text)), CONFIG) as host:
        for text in args.persistent:
            peer_id, addr = parse_peer_address(text)
            host.add_persistent_peer(peer_id, addr)
        emit({"ready": host.listen_address[1], "id": key.peer_id.hex()})
        async with trio.open_nursery() as nursery:

            async def report() -> None:
                async for event in host.events():
                    if isinstance(event, PeerConnected):
                        emit({"connected": event.peer_id.hex(), "addr": event.addr[0]})
                    elif isinstance(event, PeerDisconnected):
                        emit({"disconnected": event.peer_id.hex(), "reason": event.reason})
                    elif isinstance(event, Received):
                        emit({"received": event.frame.hex(), "from": event.peer_id.hex(),
                              "channel": event.channel})

            nursery.start_soon(report)
            stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
            pending = b""
            while True:
                chunk = await stdin.receive_some(4096)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    words = line.decode().split()
                    if words[:1] == ["broadcast"]:
                        host.broadcast(int(words[1]), bytes.fromhex(words[2]))
                    elif words[:1] == ["quit"]:
                        nursery.cancel_scope.cancel()
                        return
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--persistent", action="append", default=[])
    trio.run(main, parser.parse_args())
