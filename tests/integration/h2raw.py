"""Hand-made HTTP/2 for the bad-input tests (python stdlib only).

Frames are built byte by byte; header blocks are encoded as HPACK literals without
indexing and without Huffman (RFC 7541 6.2.2). Responses are decoded with a small but
complete HPACK decoder (static + dynamic table, Huffman) so that grpc-status can be read.
"""
import socket
import struct
import time

PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
FRAME_NAMES = ['DATA', 'HEADERS', 'PRIORITY', 'RST_STREAM', 'SETTINGS', 'PUSH_PROMISE', 'PING',
               'GOAWAY', 'WINDOW_UPDATE', 'CONTINUATION']
ERROR_NAMES = ['NO_ERROR', 'PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR',
               'SETTINGS_TIMEOUT', 'STREAM_CLOSED', 'FRAME_SIZE_ERROR', 'REFUSED_STREAM', 'CANCEL',
               'COMPRESSION_ERROR', 'CONNECT_ERROR', 'ENHANCE_YOUR_CALM', 'INADEQUATE_SECURITY',
               'HTTP_1_1_REQUIRED']


def frame(ftype, flags, stream_id, payload=b''):
    return struct.pack('>I', len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack('>I', stream_id & 0x7fffffff) + payload


def settings(*pairs, ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0, b''.join(struct.pack('>HI', k, v) for k, v in pairs))


def window_update(stream_id, inc):
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack('>I', inc))


def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7f) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name, value):
    """Literal header field without indexing, new name, no Huffman."""
    return b'\x00' + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def grpc_headers(path, authority=b'localhost', extra=()):
    fields = [(b':method', b'POST'), (b':scheme', b'http'), (b':path', path),
              (b':authority', authority), (b'content-type', b'application/grpc'),
              (b'te', b'trailers')] + list(extra)
    return b''.join(hpack_literal(n, v) for n, v in fields)


def grpc_frame(message, compressed=False):
    return bytes([1 if compressed else 0]) + struct.pack('>I', len(message)) + message


class Closed(Exception):
    pass


class Conn:
    """A client connection. recv_frame() never waits past the deadline it is given."""

    def __init__(self, host=None, port=None, timeout=10.0, handshake=True, sock=None,
                 auto_window=True):
        self.sock = sock or socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b''
        self.eof = False
        self.timeout = timeout
        self.frames = []            # every frame received, in order
        self.decoder = Decoder()
        self.auto_window = auto_window
        if handshake:
            self.send(PREFACE + settings())

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Close with a TCP RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        self.close()

    def _fill(self, deadline):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                chunk = b''
            if not chunk:
                self.eof = True
                return False
            self.buf += chunk
            return True

    def recv_frame(self, timeout=None):
        """Next frame as (type, flags, stream_id, payload); None on EOF or timeout
        (self.eof tells which)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], 'big')
                if len(self.buf) >= 9 + n:
                    f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], 'big') & 0x7fffffff,
                         self.buf[9:9 + n])
                    self.buf = self.buf[9 + n:]
                    self.frames.append(f)
                    self._auto(f)
                    return f
            if self.eof or not self._fill(deadline):
                return None

    def _auto(self, f):
        """Be a polite peer: ACK SETTINGS and PING, grant window for DATA."""
        ftype, flags, sid, payload = f
        try:
            if ftype == SETTINGS and not flags & ACK:
                self.send(settings(ack=True))
            elif ftype == PING and not flags & ACK:
                self.send(frame(PING, ACK, 0, payload))
            elif ftype == DATA and payload and self.auto_window:
                self.send(window_update(0, len(payload)) + window_update(sid, len(payload)))
        except OSError:
            pass

    def wait_closed(self, timeout=10.0):
        """Read until EOF. Returns (closed, frames received meanwhile)."""
        deadline = time.monotonic() + timeout
        got = []
        while time.monotonic() < deadline:
            f = self.recv_frame(timeout=deadline - time.monotonic())
            if f is None:
                return self.eof, got
            got.append(f)
        return False, got

    def goaway(self):
        """(last_stream_id, error name, debug data) of the first GOAWAY received, or None."""
        for ftype, _fl, _sid, payload in self.frames:
            if ftype == GOAWAY:
                last, code = struct.unpack('>II', payload[:8])
                return last & 0x7fffffff, error_name(code), payload[8:]
        return None

    def request(self, stream_id, path, message, end_stream=True):
        self.send(frame(HEADERS, END_HEADERS, stream_id, grpc_headers(path)) +
                  frame(DATA, END_STREAM if end_stream else 0, stream_id, grpc_frame(message)))

    def response(self, stream_id, timeout=10.0):
        """Collect one stream's answer: dict(headers, trailers, data, rst, goaway, eof)."""
        res = {'headers': None, 'trailers': None, 'data': b'', 'rst': None, 'goaway': None,
               'eof': False, 'timeout': False}
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(timeout=max(0.0, deadline - time.monotonic()))
            if f is None:
                res['eof'], res['timeout'] = self.eof, not self.eof
                return res
            ftype, flags, sid, payload = f
            if ftype == GOAWAY:
                res['goaway'] = self.goaway()
            elif sid != stream_id:
                continue
            elif ftype in (HEADERS, CONTINUATION):
                block = payload
                if ftype == HEADERS:
                    block = strip_headers_padding(flags, payload)
                while not flags & END_HEADERS:
                    nf = self.recv_frame(timeout=max(0.0, deadline - time.monotonic()))
                    if nf is None or nf[0] != CONTINUATION:
                        raise Closed('header block not continued: %r' % (nf,))
                    flags = nf[1]
                    block += nf[3]
                hdrs = dict((n.decode(), v.decode('utf-8', 'replace'))
                            for n, v in self.decoder.decode(block))
                if res['headers'] is None and ':status' in hdrs:
                    res['headers'] = hdrs
                    if 'grpc-status' in hdrs:           # trailers-only response
                        res['trailers'] = hdrs
                else:
                    res['trailers'] = hdrs
                if flags & END_STREAM:
                    return res
            elif ftype == DATA:
                res['data'] += strip_padding(flags, payload)
                if flags & END_STREAM:
                    return res
            elif ftype == RST_STREAM:
                res['rst'] = error_name(struct.unpack('>I', payload)[0])
                return res


def error_name(code):
    return ERROR_NAMES[code] if code < len(ERROR_NAMES) else '0x%x' % code


def strip_padding(flags, payload):
    if flags & PADDED:
        pad = payload[0]
        return payload[1:len(payload) - pad]
    return payload


def strip_headers_padding(flags, payload):
    payload = strip_padding(flags, payload)
    if flags & PRIORITY_FLAG:
        payload = payload[5:]
    return payload


def grpc_messages(data, with_flags=False):
    """Split a DATA payload into gRPC messages (or (compressed flag, message) pairs)."""
    out = []
    while len(data) >= 5:
        n = struct.unpack('>I', data[1:5])[0]
        out.append((data[0], data[5:5 + n]) if with_flags else data[5:5 + n])
        data = data[5 + n:]
    return out


# ---- HPACK decoding ----------------------------------------------------------------------
# RFC 7541 Appendix A (static table) and Appendix B (Huffman code), symbols 0..255:
# (code, bit length). Copied from golang.org/x/net/http2/hpack.
STATIC_TABLE = [
    (b':authority', b''),
    (b':method', b'GET'),
    (b':method', b'POST'),
    (b':path', b'/'),
    (b':path', b'/index.html'),
    (b':scheme', b'http'),
    (b':scheme', b'https'),
    (b':status', b'200'),
    (b':status', b'204'),
    (b':status', b'206'),
    (b':status', b'304'),
    (b':status', b'400'),
    (b':status', b'404'),
    (b':status', b'500'),
    (b'accept-charset', b''),
    (b'accept-encoding', b'gzip, deflate'),
    (b'accept-language', b''),
    (b'accept-ranges', b''),
    (b'accept', b''),
    (b'access-control-allow-origin', b''),
    (b'age', b''),
    (b'allow', b''),
    (b'authorization', b''),
    (b'cache-control', b''),
    (b'content-disposition', b''),
    (b'content-encoding', b''),
    (b'content-language', b''),
    (b'content-length', b''),
    (b'content-location', b''),
    (b'content-range', b''),
    (b'content-type', b''),
    (b'cookie', b''),
    (b'date', b''),
    (b'etag', b''),
    (b'expect', b''),
    (b'expires', b''),
    (b'from', b''),
    (b'host', b''),
    (b'if-match', b''),
    (b'if-modified-since', b''),
    (b'if-none-match', b''),
    (b'if-range', b''),
    (b'if-unmodified-since', b''),
    (b'last-modified', b''),
    (b'link', b''),
    (b'location', b''),
    (b'max-forwards', b''),
    (b'proxy-authenticate', b''),
    (b'proxy-authorization', b''),
    (b'range', b''),
    (b'referer', b''),
    (b'refresh', b''),
    (b'retry-after', b''),
    (b'server', b''),
    (b'set-cookie', b''),
    (b'strict-transport-security', b''),
    (b'transfer-encoding', b''),
    (b'user-agent', b''),
    (b'vary', b''),
    (b'via', b''),
    (b'www-authenticate', b''),
]
HUFFMAN = [
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28), (0xfffffe4, 28),
    (0xfffffe5, 28), (0xfffffe6, 28), (0xfffffe7, 28), (0xfffffe8, 28), (0xffffea, 24),
    (0x3ffffffc, 30), (0xfffffe9, 28), (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28),
    (0xfffffec, 28), (0xfffffed, 28), (0xfffffee, 28), (0xfffffef, 28), (0xffffff0, 28),
    (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28), (0xffffff4, 28),
    (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28), (0xffffff8, 28), (0xffffff9, 28),
    (0xffffffa, 28), (0xffffffb, 28), (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
    (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11), (0x3fa, 10), (0x3fb, 10), (0xf9, 8),
    (0x7fb, 11), (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6), (0x0, 5), (0x1, 5), (0x2, 5),
    (0x19, 6), (0x1a, 6), (0x1b, 6), (0x1c, 6), (0x1d, 6), (0x1e, 6), (0x1f, 6), (0x5c, 7),
    (0xfb, 8), (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10), (0x1ffa, 13), (0x21, 6),
    (0x5d, 7), (0x5e, 7), (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7), (0x63, 7), (0x64, 7),
    (0x65, 7), (0x66, 7), (0x67, 7), (0x68, 7), (0x69, 7), (0x6a, 7), (0x6b, 7), (0x6c, 7),
    (0x6d, 7), (0x6e, 7), (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7), (0xfc, 8), (0x73, 7),
    (0xfd, 8), (0x1ffb, 13), (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6),
    (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5), (0x24, 6), (0x5, 5), (0x25, 6), (0x26, 6),
    (0x27, 6), (0x6, 5), (0x74, 7), (0x75, 7), (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5),
    (0x2b, 6), (0x76, 7), (0x2c, 6), (0x8, 5), (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
    (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15), (0x7fc, 11), (0x3ffd, 14), (0x1ffd, 13),
    (0xffffffc, 28), (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20),
    (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22), (0x7fffd9, 23), (0x3fffd6, 22),
    (0x7fffda, 23), (0x7fffdb, 23), (0x7fffdc, 23), (0x7fffdd, 23), (0x7fffde, 23),
    (0xffffeb, 24), (0x7fffdf, 23), (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22),
    (0x7fffe0, 23), (0xffffee, 24), (0x7fffe1, 23), (0x7fffe2, 23), (0x7fffe3, 23),
    (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23), (0x3fffd9, 22),
    (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24), (0x3fffda, 22), (0x1fffdd, 21),
    (0xfffe9, 20), (0x3fffdb, 22), (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23),
    (0x1fffde, 21), (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22), (0xfffff0, 24),
    (0x1fffdf, 21), (0x3fffdf, 22), (0x7fffeb, 23), (0x7fffec, 23), (0x1fffe0, 21),
    (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21), (0x7fffed, 23), (0x3fffe1, 22),
    (0x7fffee, 23), (0x7fffef, 23), (0xfffea, 20), (0x3fffe2, 22), (0x3fffe3, 22),
    (0x3fffe4, 22), (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23),
    (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19), (0x3fffe7, 22),
    (0x7ffff2, 23), (0x3fffe8, 22), (0x1ffffec, 25), (0x3ffffe2, 26), (0x3ffffe3, 26),
    (0x3ffffe4, 26), (0x7ffffde, 27), (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24),
    (0x1ffffed, 25), (0x7fff2, 19), (0x1fffe3, 21), (0x3ffffe6, 26), (0x7ffffe0, 27),
    (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24), (0x1fffe4, 21),
    (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26), (0xffffffd, 28), (0x7ffffe3, 27),
    (0x7ffffe4, 27), (0x7ffffe5, 27), (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20),
    (0x1fffe6, 21), (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23),
    (0x3fffea, 22), (0x3fffeb, 22), (0x1ffffee, 25), (0x1ffffef, 25), (0xfffff4, 24),
    (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23), (0x3ffffeb, 26), (0x7ffffe6, 27),
    (0x3ffffec, 26), (0x3ffffed, 26), (0x7ffffe7, 27), (0x7ffffe8, 27), (0x7ffffe9, 27),
    (0x7ffffea, 27), (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27),
    (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26),
]

_HUFF_DECODE = {(length, code): sym for sym, (code, length) in enumerate(HUFFMAN)}


def huffman_decode(data):
    out = bytearray()
    code = length = 0
    for byte in data:
        for i in range(7, -1, -1):
            code = (code << 1) | ((byte >> i) & 1)
            length += 1
            sym = _HUFF_DECODE.get((length, code))
            if sym is not None:
                out.append(sym)
                code = length = 0
            elif length > 30:
                raise ValueError('bad Huffman code')
    if length > 7 or code != (1 << length) - 1:
        raise ValueError('bad Huffman padding')
    return bytes(out)


class Decoder:
    def __init__(self):
        self.dynamic = []            # newest first
        self.max_size = 4096

    def _size(self):
        return sum(32 + len(n) + len(v) for n, v in self.dynamic)

    def _add(self, name, value):
        self.dynamic.insert(0, (name, value))
        while self.dynamic and self._size() > self.max_size:
            self.dynamic.pop()

    def _entry(self, idx):
        if 1 <= idx <= len(STATIC_TABLE):
            return STATIC_TABLE[idx - 1]
        if 0 <= idx - len(STATIC_TABLE) - 1 < len(self.dynamic):
            return self.dynamic[idx - len(STATIC_TABLE) - 1]
        raise ValueError('bad HPACK index %d' % idx)

    @staticmethod
    def _int(block, pos, prefix_bits):
        limit = (1 << prefix_bits) - 1
        value = block[pos] & limit
        pos += 1
        if value < limit:
            return value, pos
        shift = 0
        while True:
            b = block[pos]
            pos += 1
            value += (b & 0x7f) << shift
            shift += 7
            if not b & 0x80:
                return value, pos

    def _str(self, block, pos):
        huff = block[pos] & 0x80
        n, pos = self._int(block, pos, 7)
        raw = block[pos:pos + n]
        return (huffman_decode(raw) if huff else raw), pos + n

    def decode(self, block):
        out = []
        pos = 0
        while pos < len(block):
            b = block[pos]
            if b & 0x80:                                   # indexed
                idx, pos = self._int(block, pos, 7)
                out.append(self._entry(idx))
            elif b & 0xc0 == 0x40 or b & 0xf0 in (0x00, 0x10):   # literals
                prefix = 6 if b & 0x40 else 4
                idx, pos = self._int(block, pos, prefix)
                if idx:
                    name = self._entry(idx)[0]
                else:
                    name, pos = self._str(block, pos)
                value, pos = self._str(block, pos)
                out.append((name, value))
                if prefix == 6:
                    self._add(name, value)
            elif b & 0xe0 == 0x20:                         # dynamic table size update
                self.max_size, pos = self._int(block, pos, 5)
                while self.dynamic and self._size() > self.max_size:
                    self.dynamic.pop()
            else:
                raise ValueError('bad HPACK byte 0x%02x' % b)
        return out
