"""p2p throughput: our trio QUIC driver vs aioquic's own asyncio API vs plain trio TCP.

Two processes on 127.0.0.1: this script (the sender) starts a receiver
process per run. Workloads, identical for every implementation:

- bulk: BULK_MB MiB in 64 KiB frames on one channel (one stream);
- msgs: MSGS frames of 200 bytes on one channel (one stream), the sender
  yielding to its event loop every 1,000 frames.

Both run on the blocks channel (no gossip bookkeeping), so the comparison
with aioquic's asyncio API is transport against transport. `gossip_msgs_per_s`
is the msgs workload on our consensus channel, where each frame is also
hashed (BLAKE3) and checked against the seen-cache; it has no asyncio twin.
Trio TCP runs 8x the bulk bytes and 4x the messages (it is that much faster)
and writes 32 frames per send_all.

Every frame is length-prefixed (QUIC varint) and the receiver decodes frames
with the same pure decoder (`p2p.framing.StreamDecoder`) in every
implementation. The clock starts once the connection is up and stops when
the receiver's one-frame "done" reply arrives. The aioquic asyncio run uses
the same QuicConfiguration numbers as our driver (max_datagram_size 1452,
flow-control windows, Ed25519 certificate). Runs are interleaved (ours,
asyncio, tcp) in each repeat; ratios are medians of per-repeat ratios.
The last line printed is JSON.

    .venv/bin/python benchmarks/p2p.py [--repeats 3] [--bulk-mb 32] [--msgs 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# this file is named like the package it measures: keep its own folder off the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402
from aioquic.asyncio import connect as aq_connect  # noqa: E402
from aioquic.asyncio import serve as aq_serve  # noqa: E402
from aioquic.quic.configuration import QuicConfiguration  # noqa: E402

from p2p import BLOCKS, CONSENSUS, Host, HostConfig, NodeKey, Received  # noqa: E402
from p2p.config import ALPN  # noqa: E402
from p2p.framing import StreamDecoder, encode_frame  # noqa: E402

BULK_FRAME = 64 * 1024
MSG_SIZE = 200
YIELD_EVERY = 1000
LIMITS = {0: 16 * 1024 * 1024}


def _channel(workload: str) -> int:
    # "gossip": small frames on the consensus channel, de-duplicated by BLAKE3 id
    return CONSENSUS if workload == "gossip" else BLOCKS


def _frames(workload: str, count: int) -> list[bytes]:
    # distinct frames: the consensus channel de-duplicates gossip by BLAKE3 id
    size = BULK_FRAME if workload == "bulk" else MSG_SIZE
    body = b"b" * (size - 8)
    return [i.to_bytes(8, "big") + body for i in range(count)]


# -- receivers (child process) -------------------------------------------------------


def _announce(port: int, peer_id: bytes) -> None:
    print(f"READY {port} {peer_id.hex()}", flush=True)


async def recv_ours(expect: int, key: NodeKey) -> None:
    async with Host.open(key, ("127.0.0.1", 0), HostConfig()) as host:
        _announce(host.listen_address[1], key.peer_id)
        got = 0
        async for event in host.events():
            if isinstance(event, Received):
                got += 1
                if got == expect:
                    host.send(event.peer_id, CONSENSUS, b"done")
                    # wait until the sender closes the connection
            elif got >= expect:
                break


def _aq_config(key: NodeKey, is_client: bool) -> QuicConfiguration:
    base = HostConfig()
    cfg = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        max_datagram_size=base.max_datagram_size,
        max_data=base.max_data,
        max_stream_data=base.max_stream_data,
        idle_timeout=base.idle_timeout,
        verify_mode=ssl.CERT_NONE,
    )
    cfg.certificate = key.certificate()
    cfg.private_key = key.private_key
    return cfg


async def recv_asyncio(expect: int, key: NodeKey) -> None:
    finished = asyncio.Event()
    tasks: list[asyncio.Future[None]] = []

    def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def run() -> None:
            decoder = StreamDecoder(LIMITS)
            decoder.feed(b"\x00")
            got = 0
            while got < expect:
                data = await reader.read(1 << 20)
                if not data:
                    break
                got += len(decoder.feed(data))
            writer.write(encode_frame(b"done"))
            await writer.drain()
            finished.set()

        tasks.append(asyncio.ensure_future(run()))

    server = await aq_serve("127.0.0.1", 0, configuration=_aq_config(key, False),
                            stream_handler=handler)
    port = server._transport.get_extra_info("sockname")[1]
    _announce(port, key.peer_id)
    await finished.wait()
    await asyncio.sleep(0.2)  # let the reply's datagrams leave before closing
    server.close()


async def recv_tcp(expect: int) -> None:
    done = trio.Event()

    async def handler(stream: trio.SocketStream) -> None:
        decoder = StreamDecoder(LIMITS)
        decoder.feed(b"\x00")
        got = 0
        while got < expect:
            data = await stream.receive_some(1 << 20)
            if not data:
                break
            got += len(decoder.feed(data))
        await stream.send_all(encode_frame(b"done"))
        done.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, handler, 0)
        _announce(listeners[0].socket.getsockname()[1], b"")
        await done.wait()
        nursery.cancel_scope.cancel()


def child_main(impl: str, expect: int) -> None:
    key = NodeKey.generate()
    if impl == "ours":
        trio.run(recv_ours, expect, key)
    elif impl == "asyncio":
        asyncio.run(recv_asyncio(expect, key))
    else:
        trio.run(recv_tcp, expect)


# -- senders (this process) ----------------------------------------------------------------


async def send_ours(port: int, peer_id: bytes, workload: str, count: int) -> float:
    frames = _frames(workload, count)
    channel = _channel(workload)
    async with Host.open(NodeKey.generate(), ("127.0.0.1", 0), HostConfig()) as host:
        await host.connect(peer_id, ("127.0.0.1", port))
        start = time.perf_counter()
        for i, frame in enumerate(frames):
            await host.send_wait(peer_id, channel, frame)
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await trio.sleep(0)
        async for event in host.events():
            if isinstance(event, Received) and event.frame == b"done":
                break
        return time.perf_counter() - start


async def send_asyncio(port: int, workload: str, count: int) -> float:
    frames = _frames(workload, count)
    config = _aq_config(NodeKey.generate(), True)
    async with aq_connect("127.0.0.1", port, configuration=config) as client:
        await client.wait_connected()
        reader, writer = await client.create_stream()
        start = time.perf_counter()
        for i, frame in enumerate(frames):
            writer.write(encode_frame(frame))
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await writer.drain()
                await asyncio.sleep(0)
        await writer.drain()
        await reader.read(64)
        return time.perf_counter() - start


async def send_tcp(port: int, workload: str, count: int) -> float:
    frames = _frames(workload, count)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        start = time.perf_counter()
        # 32 frames per write: the coalescing the QUIC driver does per wake-up
        batch = 1 if workload == "bulk" else 32
        for i in range(0, len(frames), batch):
            await stream.send_all(b"".join(encode_frame(f) for f in frames[i : i + batch]))
        await stream.receive_some(64)
        return time.perf_counter() - start


def run_one(impl: str, workload: str, count: int) -> float:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", impl, str(count)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        parts = line.split()
        if len(parts) < 2 or parts[0] != "READY":
            raise RuntimeError(f"receiver did not start: {line!r}")
        port = int(parts[1])
        if impl == "ours":
            elapsed = trio.run(send_ours, port, bytes.fromhex(parts[2]), workload, count)
        elif impl == "asyncio":
            elapsed = asyncio.run(send_asyncio(port, workload, count))
        else:
            elapsed = trio.run(send_tcp, port, workload, count)
        proc.wait(timeout=30)
        return elapsed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bulk-mb", type=int, default=32)
    ap.add_argument("--msgs", type=int, default=100_000)
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args()
    if args.child:
        child_main(args.child[0], int(args.child[1]))
        return
    bulk_frames = args.bulk_mb * 1024 * 1024 // BULK_FRAME
    bulk_mb = bulk_frames * BULK_FRAME / 1e6
    rates: dict[str, list[float]] = {}
    for rep in range(args.repeats):
        for impl in ("ours", "asyncio", "tcp"):
            t = run_one(impl, "bulk", bulk_frames if impl != "tcp" else bulk_frames * 8)
            mb = bulk_mb if impl != "tcp" else bulk_mb * 8
            rates.setdefault(f"{impl}_bulk", []).append(mb / t)
            t = run_one(impl, "msgs", args.msgs if impl != "tcp" else args.msgs * 4)
            n = args.msgs if impl != "tcp" else args.msgs * 4
            rates.setdefault(f"{impl}_msgs", []).append(n / t)
        # ours only: the same small frames on the consensus (gossip) channel
        t = run_one("ours", "gossip", args.msgs)
        rates.setdefault("ours_gossip", []).append(args.msgs / t)
        print(f"repeat {rep}: " + ", ".join(f"{k}={v[-1]:.1f}" for k, v in rates.items()),
              flush=True)
    bulk_ratios = [a / b for a, b in zip(rates["ours_bulk"], rates["asyncio_bulk"], strict=True)]
    msgs_ratios = [a / b for a, b in zip(rates["ours_msgs"], rates["asyncio_msgs"], strict=True)]
    result = {
        "bench": "p2p",
        "bulk_mb_per_s": round(statistics.median(rates["ours_bulk"]), 2),
        "msgs_per_s": round(statistics.median(rates["ours_msgs"])),
        "aioquic_asyncio_bulk_mb_per_s": round(statistics.median(rates["asyncio_bulk"]), 2),
        "aioquic_asyncio_msgs_per_s": round(statistics.median(rates["asyncio_msgs"])),
        "bulk_ratio": round(statistics.median(bulk_ratios), 3),
        "msgs_ratio": round(statistics.median(msgs_ratios), 3),
        "gossip_msgs_per_s": round(statistics.median(rates["ours_gossip"])),
        "trio_tcp_bulk_mb_per_s": round(statistics.median(rates["tcp_bulk"]), 1),
        "trio_tcp_msgs_per_s": round(statistics.median(rates["tcp_msgs"])),
        "bulk_mb": round(bulk_mb, 1),
        "msgs": args.msgs,
        "msg_size": MSG_SIZE,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
