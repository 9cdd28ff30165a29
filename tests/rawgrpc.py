"""A bare HTTP/2 (h2c) client that sends one gRPC message exactly as given.

The grpc library compresses messages itself, so a test that needs a body no
real client would send (say, thousands of concatenated gzip members), or one
sent slowly, frames it by hand: the connection preface, SETTINGS, one
HEADERS frame of literal header fields (RFC 7541 section 6.2.2, no Huffman
coding), then DATA frames that honour the server's flow-control windows
(RFC 9113 section 6.9). Of the answer, only header fields sent as plain
literals are read (grpc-core sends grpc-status and grpc-message so), without
Huffman coding or tables.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Final

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
_INITIAL_WINDOW: Final = 65_535
_MAX_FRAME: Final = 16_384
_STREAM: Final = 1


@dataclass
class Answer:
    """How the server ended the stream, and after how long."""

    ended_by: str  # "trailers", "rst_stream", "goaway" or "closed"
    seconds: float
    data: bytes  # the response's DATA payload (a gRPC message, if any)
    fields: dict[str, str]  # header fields sent as plain literals (see the module docstring)

    @property
    def grpc_status(self) -> int | None:
        status = self.fields.get("grpc-status")
        return None if status is None else int(status)


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _integer(value: int, prefix_bits: int) -> bytes:
    """An HPACK integer (RFC 7541 section 5.1) with the first byte's flag bits zero."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out = bytearray([limit])
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _literal(name: str, value: str) -> bytes:
    """A literal header field without indexing, new name (RFC 7541 section 6.2.2)."""
    encoded = [name.encode(), value.encode()]
    return b"\x00" + b"".join(_integer(len(part), 7) + part for part in encoded)


def _read_integer(block: bytes, at: int, prefix_bits: int) -> tuple[int, int]:
    """An HPACK integer at ``at`` (RFC 7541 section 5.1) and the offset after it."""
    limit = (1 << prefix_bits) - 1
    value, at = block[at] & limit, at + 1
    if value < limit:
        return value, at
    shift = 0
    while True:
        byte, at = block[at], at + 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _read_string(block: bytes, at: int) -> tuple[str | None, int]:
    """An HPACK string literal (None when Huffman-coded) and the offset after it."""
    huffman = bool(block[at] & 0x80)
    length, at = _read_integer(block, at, 7)
    return (None if huffman else block[at : at + length].decode("latin-1")), at + length


def plain_fields(block: bytes) -> dict[str, str]:
    """The fields of an HPACK header block (RFC 7541 section 6) sent as a literal name and
    an uncoded value; indexed names and Huffman-coded strings are skipped."""
    fields: dict[str, str] = {}
    at = 0
    while at < len(block):
        first = block[at]
        if first & 0x80:  # indexed field
            _, at = _read_integer(block, at, 7)
        elif first & 0xE0 == 0x20:  # dynamic table size update
            _, at = _read_integer(block, at, 5)
        else:  # a literal, with incremental indexing (6-bit index) or without (4-bit)
            index, at = _read_integer(block, at, 6 if first & 0x40 else 4)
            name: str | None = None
            if index == 0:
                name, at = _read_string(block, at)
            value, at = _read_string(block, at)
            if name is not None and value is not None:
                fields[name] = value
    return fields


def call_start(
    address: tuple[str, int], path: str, *, compressed: bool, headers: dict[str, str] | None = None
) -> bytes:
    """The bytes that open a connection and start one call on stream 1: preface, SETTINGS
    and the request's HEADERS frame."""
    fields = [(":method", "POST"), (":scheme", "http"), (":path", path),
              (":authority", f"{address[0]}:{address[1]}"),
              ("content-type", "application/grpc"), ("te", "trailers")]  # fmt: skip
    if compressed:
        fields.append(("grpc-encoding", "gzip"))
    fields += list((headers or {}).items())
    block = b"".join(_literal(name, value) for name, value in fields)
    return PREFACE + _frame(SETTINGS, 0, 0) + _frame(HEADERS, END_HEADERS, _STREAM, block)


def data_frame(payload: bytes, *, end_stream: bool = False) -> bytes:
    """A DATA frame on stream 1."""
    return _frame(DATA, END_STREAM if end_stream else 0, _STREAM, payload)


class _Connection:
    def __init__(self, address: tuple[str, int], timeout_s: float, source_host: str = "") -> None:
        source = (source_host, 0) if source_host else None
        self.sock = socket.create_connection(address, timeout=timeout_s, source_address=source)
        self.buffer = b""
        self.send_window = {0: _INITIAL_WINDOW, _STREAM: _INITIAL_WINDOW}
        self.stream_initial = _INITIAL_WINDOW

    def read_frame(self) -> tuple[int, int, int, bytes] | None:
        while len(self.buffer) < 9 or len(self.buffer) < 9 + int.from_bytes(self.buffer[:3]):
            got = self.sock.recv(65_536)
            if not got:
                return None
            self.buffer += got
        length = int.from_bytes(self.buffer[:3])
        kind, flags = self.buffer[3], self.buffer[4]
        stream = int.from_bytes(self.buffer[5:9]) & 0x7FFF_FFFF
        payload, self.buffer = self.buffer[9 : 9 + length], self.buffer[9 + length :]
        self._bookkeep(kind, flags, stream, payload)
        return kind, flags, stream, payload

    def _bookkeep(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == SETTINGS and not flags & ACK:
            for at in range(0, len(payload), 6):
                key, value = struct.unpack(">HI", payload[at : at + 6])
                if key == 4:  # SETTINGS_INITIAL_WINDOW_SIZE
                    self.send_window[_STREAM] += value - self.stream_initial
                    self.stream_initial = value
            self.sock.sendall(_frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            self.sock.sendall(_frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE:
            self.send_window[stream] = self.send_window.get(stream, 0) + (
                int.from_bytes(payload) & 0x7FFF_FFFF
            )


def _await_end(conn: _Connection, started: float, body: bytes = b"") -> Answer:
    """Send what flow control lets of ``body`` (the rest as windows open) and read frames
    until the server ends stream 1."""
    sent = 0
    response = bytearray()
    fields: dict[str, str] = {}

    def answer(ended_by: str) -> Answer:
        return Answer(ended_by, time.monotonic() - started, bytes(response), fields)

    while True:
        while sent < len(body):
            room = min(conn.send_window[0], conn.send_window[_STREAM], _MAX_FRAME)
            if room <= 0:
                break
            piece = body[sent : sent + room]
            sent += len(piece)
            conn.send_window[0] -= len(piece)
            conn.send_window[_STREAM] -= len(piece)
            conn.sock.sendall(data_frame(piece, end_stream=sent == len(body)))
        try:
            frame = conn.read_frame()
        except TimeoutError:
            return answer("timeout")
        except ConnectionError:
            return answer("closed")
        if frame is None:
            return answer("closed")
        kind, flags, stream, payload = frame
        if kind == DATA and stream == _STREAM:
            response += payload
        elif kind == HEADERS and stream == _STREAM:
            fields.update(plain_fields(payload))  # no PADDED or PRIORITY flags from grpc
            if flags & END_STREAM:
                return answer("trailers")
        elif kind == RST_STREAM and stream == _STREAM:
            return answer("rst_stream")
        elif kind == GOAWAY:
            return answer("goaway")


def unary_call(
    address: tuple[str, int],
    path: str,
    message: bytes,
    *,
    compressed: bool,
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
    source_host: str = "",
) -> Answer:
    """Send one length-prefixed gRPC message (RFC 9113 + the gRPC HTTP/2 protocol) and wait
    for the server to end the stream. ``message`` is sent as is, flagged as compressed
    (with ``grpc-encoding: gzip``) when ``compressed``; ``source_host`` binds the client end."""
    conn = _Connection(address, timeout_s, source_host)
    try:
        conn.sock.sendall(call_start(address, path, compressed=compressed, headers=headers))
        body = bytes([1 if compressed else 0]) + struct.pack(">I", len(message)) + message
        return _await_end(conn, time.monotonic(), body)
    finally:
        conn.sock.close()


class HeldCall:
    """A call whose client sends its headers, then ``first_data`` (a DATA frame's payload,
    none by default) and nothing more: what an idle or stalled client holds on a server.

    ``source_host`` binds the client end (say ``127.0.0.2``, to be another peer on
    loopback)."""

    def __init__(
        self,
        address: tuple[str, int],
        path: str,
        *,
        headers: dict[str, str] | None = None,
        first_data: bytes = b"",
        source_host: str = "",
    ) -> None:
        self.conn = _Connection(address, 10.0, source_host)
        self.started = time.monotonic()
        start = call_start(address, path, compressed=False, headers=headers)
        self.conn.sock.sendall(start + (data_frame(first_data) if first_data else b""))

    def answer(self, timeout_s: float) -> Answer:
        """How the server ends the call (``ended_by="timeout"`` if not within ``timeout_s``);
        ``seconds`` count from the call's start."""
        self.conn.sock.settimeout(timeout_s)
        return _await_end(self.conn, self.started)

    def close(self) -> None:
        """Close the connection."""
        self.conn.sock.close()
