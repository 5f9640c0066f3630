"""Stream bytes <-> frames: the pure protocol object of one channel stream.

Theory of operation. Each channel rides one unidirectional QUIC stream per
direction, opened by the sender the first time it has a frame for that
channel. The stream opens with one byte, the channel id; then come frames,
each a length prefix followed by that many payload bytes. The length prefix
is a QUIC variable-length integer (RFC 9000 section 16: the two top bits of
the first byte give its size, 1, 2, 4 or 8 bytes) and must use the shortest
form, so every frame sequence has exactly one encoding. A stream must end on
a frame boundary.

`StreamDecoder` is fed whatever the transport delivers (one byte or a
megabyte) and returns the complete frames; it raises `MalformedFrame` or
`FrameTooLarge` (both the peer's fault) and never anything else. It checks a
length against the channel's limit as soon as the prefix is complete, before
buffering any of the payload.
"""

from __future__ import annotations

from collections.abc import Mapping

from p2p.errors import FrameTooLarge, LocalProtocolError, MalformedFrame

VARINT_MAX = (1 << 62) - 1


def encode_varint(value: int) -> bytes:
    """The shortest QUIC varint for `value`."""
    if value < 0 or value > VARINT_MAX:
        raise LocalProtocolError(f"varint out of range: {value}")
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 0x4000_0000:
        return (value | 0x8000_0000).to_bytes(4, "big")
    return (value | 0xC000_0000_0000_0000).to_bytes(8, "big")


def _minimum_for_size(size: int) -> int:
    return {1: 0, 2: 0x40, 4: 0x4000, 8: 0x4000_0000}[size]


def encode_frame(payload: bytes) -> bytes:
    """One frame: length prefix and payload."""
    return encode_varint(len(payload)) + payload


def stream_preamble(channel: int) -> bytes:
    """The first byte of a channel stream."""
    if not 0 <= channel <= 255:
        raise LocalProtocolError(f"channel id must be 0..255, got {channel}")
    return bytes((channel,))


class StreamDecoder:
    """Decodes one inbound channel stream; `channel` is None until its first byte."""

    __slots__ = ("_buf", "_limits", "_need", "channel", "max_frame_size")

    def __init__(self, limits: Mapping[int, int]) -> None:
        self._limits = limits
        self._buf = bytearray()
        self._need = -1  # payload length of the frame in progress, -1 = reading a prefix
        self.channel: int | None = None
        self.max_frame_size = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Consume `data`; return the frames it completed, in order."""
        buf = self._buf
        buf += data
        pos = 0
        frames: list[bytes] = []
        end = len(buf)
        if self.channel is None:
            if end == 0:
                return frames
            channel = buf[0]
            limit = self._limits.get(channel)
            if limit is None:
                raise MalformedFrame(f"unknown channel {channel}")
            self.channel = channel
            self.max_frame_size = limit
            pos = 1
        need = self._need
        limit = self.max_frame_size
        while True:
            if need < 0:
                if pos >= end:
                    break
                first = buf[pos]
                size = 1 << (first >> 6)
                if end - pos < size:
                    break
                value = first & 0x3F
                for i in range(pos + 1, pos + size):
                    value = (value << 8) | buf[i]
                if size > 1 and value < _minimum_for_size(size):
                    raise MalformedFrame("non-minimal frame length prefix")
                if value > limit:
                    raise FrameTooLarge(
                        f"frame of {value} bytes on channel {self.channel} exceeds {limit}"
                    )
                pos += size
                need = value
            if end - pos < need:
                break
            frames.append(bytes(buf[pos : pos + need]))
            pos += need
            need = -1
        del buf[:pos]
        self._need = need
        return frames

    def end_of_stream(self) -> None:
        """The peer finished the stream: it must stop on a frame boundary."""
        if self._need >= 0 or self._buf:
            raise MalformedFrame("stream ended inside a frame")

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame (bounded by the channel's limit + 8)."""
        return len(self._buf)
