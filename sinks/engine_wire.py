"""Framing of the calls between the worker and its ClickHouse engine process.

One message is an 8-byte big-endian length followed by a pickle. Pickle, because the calls
carry the same Python values the in-thread gateway passes (row tuples, datetimes, models) and
both ends are the same code base; the pipe is private to the two processes.
"""

from __future__ import annotations

import pickle
import struct
from typing import IO, Any

_LENGTH = struct.Struct(">Q")


class WireClosed(EOFError):
    """The other end closed the pipe (it exited or was killed)."""


def send_message(stream: IO[bytes], message: Any) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def receive_message(stream: IO[bytes]) -> Any:
    return pickle.loads(receive_frame(stream))


def receive_frame(stream: IO[bytes]) -> bytes:
    """One message's pickle, not yet loaded (loading can fail on its own)."""
    header = _read_exactly(stream, _LENGTH.size)
    (length,) = _LENGTH.unpack(header)
    return _read_exactly(stream, length)


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise WireClosed(f"pipe closed with {remaining} of {size} bytes unread")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
