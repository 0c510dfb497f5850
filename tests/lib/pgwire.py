"""
pgwire.py — a minimal raw PostgreSQL wire-protocol (v3) client for low-level tests.

It speaks exactly what a test tells it to, including things no driver would send: garbage
before the start-up packet, messages with lying lengths, a Parse without a Sync. Every read has
a timeout, so a proxy that never answers makes a test fail, not hang.

    c = PgWire("127.0.0.1", port)
    c.startup(user="postgres", database="test")    # start-up + auth, up to ReadyForQuery
    msgs = c.simple_query("SELECT 1")              # every backend message up to ReadyForQuery
    c.send_msg(b"Q", b"", length=2)                # malformed: length below 4
    err = c.read_msg()                             # Message; err.sqlstate == "08P01"
"""

import base64
import hashlib
import hmac
import os
import socket
import struct
import time

PROTOCOL_3_0 = 196608           # 3 << 16
SSL_REQUEST_CODE = 80877103     # 1234 << 16 | 5679
GSSENC_REQUEST_CODE = 80877104  # 1234 << 16 | 5680
CANCEL_REQUEST_CODE = 80877102  # 1234 << 16 | 5678

# Authentication request codes carried by 'R' messages.
AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12

# ErrorResponse / NoticeResponse field codes -> readable names.
ERROR_FIELDS = {
    "S": "severity_localized", "V": "severity", "C": "sqlstate", "M": "message",
    "D": "detail", "H": "hint", "P": "position", "p": "internal_position",
    "q": "internal_query", "W": "where", "s": "schema", "t": "table", "c": "column",
    "d": "datatype", "n": "constraint", "F": "file", "L": "line", "R": "routine",
}


class ConnectionClosed(Exception):
    """The peer closed the connection (EOF or reset) while a message was expected."""


class ProtocolError(Exception):
    """The peer sent something this client cannot parse, or not what was expected."""


class ServerError(Exception):
    """An ErrorResponse arrived where success was expected. .msg is the Message."""

    def __init__(self, msg):
        self.msg = msg
        super().__init__("%s: %s" % (msg.sqlstate, msg.message))


def _cstr(s):
    if isinstance(s, str):
        s = s.encode()
    return s + b"\0"


class Message:
    """One backend message: a one-character type and its payload (without type and length)."""

    __slots__ = ("type", "payload")

    def __init__(self, type_, payload):
        self.type = type_        # str of length 1, e.g. "Z"; "" for the 1-byte SSL answer
        self.payload = payload   # bytes

    def __repr__(self):
        extra = ""
        if self.type in ("E", "N"):
            extra = " %s %r" % (self.sqlstate, self.message)
        elif self.type == "C":
            extra = " %r" % self.command_tag
        elif self.type == "R":
            extra = " auth=%d" % self.auth_code
        elif self.type == "Z":
            extra = " status=%s" % self.tx_status
        return "<Message %r len=%d%s>" % (self.type, len(self.payload), extra)

    def __eq__(self, other):
        return (isinstance(other, Message) and self.type == other.type
                and self.payload == other.payload)

    def __hash__(self):
        return hash((self.type, self.payload))

    def raw(self):
        """The message as it was on the wire."""
        return self.type.encode() + struct.pack("!i", len(self.payload) + 4) + self.payload

    # -- ErrorResponse / NoticeResponse ---------------------------------------------------
    @property
    def fields(self):
        """Dict of field code -> value for 'E' and 'N' messages."""
        out = {}
        p = self.payload
        i = 0
        while i < len(p) and p[i] != 0:
            code = chr(p[i])
            end = p.index(b"\0", i + 1)
            out[code] = p[i + 1:end].decode("utf-8", "replace")
            i = end + 1
        return out

    @property
    def named_fields(self):
        return {ERROR_FIELDS.get(k, k): v for k, v in self.fields.items()}

    @property
    def sqlstate(self):
        return self.fields.get("C") if self.type in ("E", "N") else None

    @property
    def message(self):
        return self.fields.get("M") if self.type in ("E", "N") else None

    @property
    def severity(self):
        f = self.fields
        return f.get("V", f.get("S"))

    # -- other message kinds ----------------------------------------------------------------
    @property
    def auth_code(self):
        return struct.unpack("!i", self.payload[:4])[0]

    @property
    def tx_status(self):
        return chr(self.payload[0])

    @property
    def command_tag(self):
        return self.payload.rstrip(b"\0").decode()

    @property
    def parameter_status(self):
        name, value, _ = self.payload.split(b"\0", 2)
        return name.decode(), value.decode()

    @property
    def backend_key(self):
        return struct.unpack("!ii", self.payload[:8])

    @property
    def notification(self):
        pid = struct.unpack("!i", self.payload[:4])[0]
        channel, payload, _ = self.payload[4:].split(b"\0", 2)
        return pid, channel.decode(), payload.decode()

    @property
    def data_row(self):
        """List of column values (bytes, or None for NULL) of a 'D' message."""
        p = self.payload
        n = struct.unpack("!h", p[:2])[0]
        i = 2
        cols = []
        for _ in range(n):
            ln = struct.unpack("!i", p[i:i + 4])[0]
            i += 4
            if ln < 0:
                cols.append(None)
            else:
                cols.append(p[i:i + ln])
                i += ln
        return cols

    @property
    def row_description(self):
        """List of (name, table_oid, attnum, type_oid, typlen, typmod, format) of a 'T'."""
        p = self.payload
        n = struct.unpack("!h", p[:2])[0]
        i = 2
        out = []
        for _ in range(n):
            end = p.index(b"\0", i)
            name = p[i:end].decode()
            i = end + 1
            rest = struct.unpack("!ihihih", p[i:i + 18])
            i += 18
            out.append((name,) + rest)
        return out

    @property
    def parameter_description(self):
        p = self.payload
        n = struct.unpack("!h", p[:2])[0]
        return list(struct.unpack("!%dI" % n, p[2:2 + 4 * n]))


class PgWire:
    """One raw TCP connection to a PostgreSQL-speaking server."""

    def __init__(self, host, port, timeout=10.0, rcvbuf=None):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Before connect, so the advertised window starts small.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.bytes_received = 0
        self.backend_pid = None
        self.backend_secret = None
        self.parameters = {}
        self.startup_messages = []
        self.closed = False

    # -- plumbing ----------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self, reset=False):
        """Closes the socket; with reset=True the peer sees a TCP RST instead of a FIN."""
        if self.closed:
            return
        self.closed = True
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass

    def send_raw(self, data):
        self.sock.sendall(data)

    def _fill(self, n, timeout):
        """Reads until the buffer holds at least n bytes or the deadline passes."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out waiting for %d bytes (have %d)"
                                     % (n, len(self.buf)))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(max(65536, n - len(self.buf)))
            except ConnectionResetError as e:
                raise ConnectionClosed("connection reset by peer") from e
            if not chunk:
                raise ConnectionClosed("connection closed by peer (have %d of %d bytes)"
                                       % (len(self.buf), n))
            self.bytes_received += len(chunk)
            self.buf += chunk

    def read_byte(self, timeout=None):
        """One raw byte (the answer to SSLRequest/GSSENCRequest)."""
        self._fill(1, timeout)
        b = bytes(self.buf[:1])
        del self.buf[:1]
        return b

    def read_msg(self, timeout=None):
        """The next backend message. Raises ConnectionClosed on EOF, socket.timeout on timeout."""
        self._fill(5, timeout)
        length = struct.unpack("!i", self.buf[1:5])[0]
        if length < 4:
            raise ProtocolError("backend message %r with length %d" % (chr(self.buf[0]), length))
        self._fill(1 + length, timeout)
        msg = Message(chr(self.buf[0]), bytes(self.buf[5:1 + length]))
        del self.buf[:1 + length]
        return msg

    def read_until(self, types, timeout=None):
        """Messages up to and including the first whose type is in `types`."""
        out = []
        while True:
            m = self.read_msg(timeout)
            out.append(m)
            if m.type in types:
                return out

    def read_until_ready(self, timeout=None):
        """Messages up to and including ReadyForQuery."""
        return self.read_until("Z", timeout)

    def expect_closed(self, timeout=5.0):
        """Reads and returns messages until the peer closes; raises socket.timeout if it stays open."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                out.append(self.read_msg(timeout=max(0.01, deadline - time.monotonic())))
            except ConnectionClosed:
                return out

    def is_closed_by_peer(self, timeout=5.0):
        try:
            self.expect_closed(timeout)
            return True
        except socket.timeout:
            return False

    # -- frontend messages ---------------------------------------------------------------------
    def send_msg(self, type_, payload=b"", length=None):
        """Sends one typed message; `length` overrides the int32 length field (for malformed ones)."""
        if isinstance(type_, str):
            type_ = type_.encode()
        if length is None:
            length = len(payload) + 4
        self.sock.sendall(type_ + struct.pack("!i", length) + payload)

    @staticmethod
    def startup_packet(user=None, database=None, params=None, version=PROTOCOL_3_0):
        body = struct.pack("!i", version)
        kv = {}
        if user is not None:
            kv["user"] = user
        if database is not None:
            kv["database"] = database
        kv.update(params or {})
        for k, v in kv.items():
            body += _cstr(k) + _cstr(v)
        body += b"\0"
        return struct.pack("!i", len(body) + 4) + body

    def send_startup(self, user=None, database=None, params=None, version=PROTOCOL_3_0):
        self.sock.sendall(self.startup_packet(user, database, params, version))

    def ssl_request(self, timeout=None):
        """Sends SSLRequest; returns the one-byte answer (b'N' or b'S') or raises."""
        self.sock.sendall(struct.pack("!ii", 8, SSL_REQUEST_CODE))
        return self.read_byte(timeout)

    def gssenc_request(self, timeout=None):
        self.sock.sendall(struct.pack("!ii", 8, GSSENC_REQUEST_CODE))
        return self.read_byte(timeout)

    def startup(self, user, database="test", password=None, params=None, version=PROTOCOL_3_0,
                timeout=None):
        """Start-up and authentication up to ReadyForQuery. Raises ServerError on ErrorResponse."""
        self.send_startup(user, database, params, version)
        self.startup_messages = self.authenticate(user, password, timeout)
        for m in self.startup_messages:
            if m.type == "K":
                self.backend_pid, self.backend_secret = m.backend_key
            elif m.type == "S":
                k, v = m.parameter_status
                self.parameters[k] = v
        return self.startup_messages

    def authenticate(self, user, password=None, timeout=None):
        """Answers authentication requests until ReadyForQuery; returns every message read."""
        out = []
        scram = None
        while True:
            m = self.read_msg(timeout)
            out.append(m)
            if m.type == "E":
                raise ServerError(m)
            if m.type == "Z":
                return out
            if m.type != "R":
                continue
            code = m.auth_code
            if code == AUTH_OK:
                continue
            if password is None:
                raise ProtocolError("server asked for authentication %d, no password given" % code)
            if code == AUTH_CLEARTEXT:
                self.send_msg(b"p", _cstr(password))
            elif code == AUTH_MD5:
                self.send_msg(b"p", _cstr(md5_password(user, password, m.payload[4:8])))
            elif code == AUTH_SASL:
                mechs = [x.decode() for x in m.payload[4:].split(b"\0") if x]
                if "SCRAM-SHA-256" not in mechs:
                    raise ProtocolError("no SCRAM-SHA-256 among %r" % mechs)
                scram = ScramClient(password)
                first = scram.client_first().encode()
                self.send_msg(b"p", _cstr("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first)
            elif code == AUTH_SASL_CONTINUE:
                self.send_msg(b"p", scram.client_final(m.payload[4:].decode()).encode())
            elif code == AUTH_SASL_FINAL:
                scram.verify_server_final(m.payload[4:].decode())
            else:
                raise ProtocolError("unsupported authentication request %d" % code)

    @classmethod
    def cancel(cls, host, port, pid, secret, timeout=5.0):
        """Sends a CancelRequest on a new connection and waits for the server to close it."""
        with cls(host, port, timeout=timeout) as c:
            c.sock.sendall(struct.pack("!iiii", 16, CANCEL_REQUEST_CODE, pid, secret))
            try:
                c.expect_closed(timeout)
            except (socket.timeout, ConnectionClosed):
                pass

    def query(self, sql):
        self.send_msg(b"Q", _cstr(sql))

    def simple_query(self, sql, timeout=None):
        self.query(sql)
        return self.read_until_ready(timeout)

    def parse(self, name, sql, param_oids=()):
        self.send_msg(b"P", _cstr(name) + _cstr(sql) + struct.pack("!h", len(param_oids))
                      + b"".join(struct.pack("!I", o) for o in param_oids))

    def bind(self, portal, statement, params=(), param_formats=(), result_formats=()):
        body = _cstr(portal) + _cstr(statement)
        body += struct.pack("!h", len(param_formats))
        body += b"".join(struct.pack("!h", f) for f in param_formats)
        body += struct.pack("!h", len(params))
        for p in params:
            if p is None:
                body += struct.pack("!i", -1)
            else:
                if isinstance(p, str):
                    p = p.encode()
                body += struct.pack("!i", len(p)) + p
        body += struct.pack("!h", len(result_formats))
        body += b"".join(struct.pack("!h", f) for f in result_formats)
        self.send_msg(b"B", body)

    def describe(self, kind, name=""):
        """kind 'S' (statement) or 'P' (portal)."""
        self.send_msg(b"D", kind.encode() + _cstr(name))

    def execute(self, portal="", max_rows=0):
        self.send_msg(b"E", _cstr(portal) + struct.pack("!i", max_rows))

    def close_object(self, kind, name=""):
        self.send_msg(b"C", kind.encode() + _cstr(name))

    def sync(self):
        self.send_msg(b"S")

    def flush(self):
        self.send_msg(b"H")

    def terminate(self):
        self.send_msg(b"X")

    def copy_data(self, data):
        self.send_msg(b"d", data)

    def copy_done(self):
        self.send_msg(b"c")

    def copy_fail(self, reason):
        self.send_msg(b"f", _cstr(reason))


def md5_password(user, password, salt):
    """The 'md5...' response to AuthenticationMD5Password."""
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


class ScramClient:
    """SCRAM-SHA-256 client side (RFC 5802/7677), without channel binding, as libpq does it."""

    def __init__(self, password):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.client_first_bare = "n=,r=" + self.nonce
        self.server_signature = None

    def client_first(self):
        return "n,," + self.client_first_bare

    def client_final(self, server_first):
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        if not attrs["r"].startswith(self.nonce):
            raise ProtocolError("SCRAM server nonce does not extend ours")
        salt = base64.b64decode(attrs["s"])
        iterations = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = "c=biws,r=" + attrs["r"]
        auth_message = ",".join([self.client_first_bare, server_first, without_proof]).encode()
        client_sig = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, client_sig))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        return without_proof + ",p=" + base64.b64encode(proof).decode()

    def verify_server_final(self, server_final):
        attrs = dict(kv.split("=", 1) for kv in server_final.split(","))
        if "e" in attrs:
            raise ProtocolError("SCRAM server error: " + attrs["e"])
        if base64.b64decode(attrs["v"]) != self.server_signature:
            raise ProtocolError("SCRAM server signature mismatch")

