"""Channels and the per-peer send queue (pure).

A channel is a small integer id with a spec: priority (lower sends first),
maximum frame size, how many bytes may wait for one peer, and what happens
when that bound is hit: `Overflow.DROP` discards the new frame (mempool, peer
exchange: a lost frame is repaired by later gossip), `Overflow.DISCONNECT`
declares the peer too slow and drops the connection (consensus, blocks: a
silently lost vote or block part would stall the peer forever).

`SendQueue` holds one peer's encoded frames per channel. The driver moves
them into QUIC streams in priority order, only while the stream's
unacknowledged bytes stay under a window, so the queue (not aioquic's
unbounded buffer) is where pressure shows.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from p2p.errors import ConfigError


class Overflow(enum.Enum):
    """What a full per-peer queue does with one more frame."""

    DROP = "drop"
    DISCONNECT = "disconnect"


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One channel's contract."""

    id: int
    """Wire id, 0..255; also the first byte of the channel's stream."""
    name: str
    """Label used in metrics."""
    priority: int
    """Lower is more urgent: consensus 0 > blocks 1 > mempool 2 > peer exchange 3."""
    max_frame_size: int
    """Largest frame payload accepted or sent on this channel, in bytes."""
    queue_bytes: int
    """Bytes that may wait for one peer before `overflow` applies."""
    overflow: Overflow
    """Policy when `queue_bytes` would be exceeded."""
    gossip: bool = False
    """Frames received here are de-duplicated by BLAKE3 id and forwarded to all other peers."""

    def __post_init__(self) -> None:
        if not 0 <= self.id <= 255:
            raise ConfigError(f"channel id {self.id} not in 0..255")
        # the queue must hold the largest frame with its 8-byte length prefix
        if self.max_frame_size <= 0 or self.queue_bytes < self.max_frame_size + 8:
            raise ConfigError(
                f"channel {self.name}: need 0 < max_frame_size <= queue_bytes - 8"
            )


PEX = 0
CONSENSUS = 1
BLOCKS = 2
MEMPOOL = 3

KIB = 1024
MIB = 1024 * 1024

DEFAULT_CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec(CONSENSUS, "consensus", 0, 1 * MIB, 16 * MIB, Overflow.DISCONNECT, gossip=True),
    ChannelSpec(BLOCKS, "blocks", 1, 8 * MIB, 64 * MIB, Overflow.DISCONNECT),
    ChannelSpec(MEMPOOL, "mempool", 2, 256 * KIB, 4 * MIB, Overflow.DROP, gossip=True),
    ChannelSpec(PEX, "pex", 3, 64 * KIB, 256 * KIB, Overflow.DROP),
)


def check_channels(specs: Iterable[ChannelSpec]) -> dict[int, ChannelSpec]:
    """Index specs by id; the PEX channel (0) is required, ids are unique."""
    table: dict[int, ChannelSpec] = {}
    for spec in specs:
        if spec.id in table:
            raise ConfigError(f"channel id {spec.id} defined twice")
        table[spec.id] = spec
    if PEX not in table:
        raise ConfigError("channel 0 (peer exchange) is required")
    return table


class Push(enum.Enum):
    """Outcome of `SendQueue.push`."""

    QUEUED = "queued"
    DROPPED = "dropped"
    OVERFLOW = "overflow"  # the peer must be disconnected


class SendQueue:
    """One peer's pending frames, per channel, bounded in bytes."""

    __slots__ = ("_bytes", "_frames", "_order", "_specs")

    def __init__(self, specs: dict[int, ChannelSpec]) -> None:
        self._specs = specs
        self._order = sorted(specs, key=lambda c: (specs[c].priority, c))
        self._frames: dict[int, deque[bytes]] = {c: deque() for c in specs}
        self._bytes: dict[int, int] = dict.fromkeys(specs, 0)

    def push(self, channel: int, encoded: bytes) -> Push:
        spec = self._specs[channel]
        if self._bytes[channel] + len(encoded) > spec.queue_bytes:
            return Push.DROPPED if spec.overflow is Overflow.DROP else Push.OVERFLOW
        self._frames[channel].append(encoded)
        self._bytes[channel] += len(encoded)
        return Push.QUEUED

    def pending_channels(self) -> list[int]:
        """Channels with waiting frames, most urgent first."""
        return [c for c in self._order if self._bytes[c]]

    def take(self, channel: int, budget: int) -> bytes:
        """Pop whole frames up to `budget` bytes (at least one frame), joined."""
        frames = self._frames[channel]
        taken: list[bytes] = []
        size = 0
        while frames and (not taken or size + len(frames[0]) <= budget):
            frame = frames.popleft()
            taken.append(frame)
            size += len(frame)
        self._bytes[channel] -= size
        return b"".join(taken)

    def queued_bytes(self, channel: int | None = None) -> int:
        if channel is None:
            return sum(self._bytes.values())
        return self._bytes[channel]
