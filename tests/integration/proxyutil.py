"""Helpers for the proxy tests: Cache-Status parsing, a raw HTTP/1.1 client
for what `requests` cannot send (malformed requests, pipelining, exotic
targets, slow reads), JWTs, logfmt, bounded polling."""
import base64
import hashlib
import hmac
import json
import re
import socket
import time

from requests.structures import CaseInsensitiveDict

ADMIN_TOKEN = "test-token"
USER_SECRET = "test-user-secret"


# ---- assumptions the contract leaves open, kept in one place --------------

def purge_token_headers(token):
    """How a PURGE carries `http_cache.purge.token` (DESIGN: "carrying the
    purge token"; assumed: Authorization: Bearer, like the admin API)."""
    return {"Authorization": "Bearer %s" % token}


def jwt_headers(token):
    """Where `user_from: jwt:CLAIM` reads the token from (assumed:
    Authorization: Bearer)."""
    return {"Authorization": "Bearer %s" % token}


# ---- Cache-Status (RFC 9211) ----------------------------------------------

def _split_members(value):
    """Split a Cache-Status field value into members (commas outside quotes)."""
    out, cur, q, esc = [], [], False, False
    for ch in value:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\" and q:
            cur.append(ch)
            esc = True
        elif ch == '"':
            cur.append(ch)
            q = not q
        elif ch == "," and not q:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return [m for m in out if m]


def cache_status_members(resp):
    v = resp.headers.get("Cache-Status")
    return _split_members(v) if v else []


def strata_members(resp):
    return [m for m in cache_status_members(resp)
            if m.split(";")[0].strip() == "strata"]


def cache_status(resp):
    """strata's member of the response's Cache-Status, normalised to
    `strata; a; b=c` spacing. AssertionError if there is none or several."""
    ms = strata_members(resp)
    assert len(ms) == 1, "expected exactly one strata Cache-Status member, got %r " \
        "(Cache-Status: %r)" % (ms, resp.headers.get("Cache-Status"))
    return "; ".join(p.strip() for p in ms[0].split(";"))


def cs_params(member):
    """'strata; hit; ttl=5' -> {'hit': True, 'ttl': '5'} (first item dropped)."""
    out = {}
    for p in member.split(";")[1:]:
        k, eq, v = p.strip().partition("=")
        out[k] = v if eq else True
    return out


def assert_cs(resp, expected, slack=2):
    """Assert strata's Cache-Status member equals `expected` item by item,
    in order. Integer `ttl=` values may be up to `slack` seconds lower than
    expected: strata's clock may follow real time between two requests."""
    got = cache_status(resp)
    g = [p.strip() for p in got.split(";")]
    e = [p.strip() for p in expected.split(";")]
    ok = len(g) == len(e)
    if ok:
        for a, b in zip(g, e):
            if a == b:
                continue
            ka, _, va = a.partition("=")
            kb, _, vb = b.partition("=")
            if ka == kb == "ttl" and re.fullmatch(r"-?\d+", va) and re.fullmatch(r"-?\d+", vb):
                if int(vb) - slack <= int(va) <= int(vb):
                    continue
            ok = False
            break
    assert ok, "Cache-Status: got %r, expected %r" % (got, expected)


def assert_cs_prefix(resp, prefix):
    got = cache_status(resp)
    assert got == prefix or got.startswith(prefix + ";"), \
        "Cache-Status: got %r, expected it to start with %r" % (got, prefix)


def not_stored(resp):
    """True when strata's member says the response was not stored."""
    p = cs_params(cache_status(resp))
    return "stored" not in p and "hit" not in p


# ---- polling ---------------------------------------------------------------

def wait_until(pred, timeout=10, interval=0.02, msg="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, msg))
        time.sleep(interval)


# ---- JWT (HS256, no extra libraries) ----------------------------------------

def wait_waiters(s, n):
    """Wait (bounded) until n requests wait inside strata on another request's
    fetch (GET /_strata/debug/flights, served with STRATA_TEST_CLOCK=1)."""
    def count():
        r = s.admin_get("/_strata/debug/flights")
        assert r.status_code == 200, r.text
        return r.json()["waiters"]
    wait_until(lambda: count() == n, 10, msg="%d coalesced waiters" % n)


def _b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_jwt(claims, key, alg="HS256"):
    header = {"alg": alg, "typ": "JWT"}
    h = _b64u(json.dumps(header, separators=(",", ":")).encode())
    p = _b64u(json.dumps(claims, separators=(",", ":")).encode())
    signing = ("%s.%s" % (h, p)).encode()
    if alg == "HS256":
        sig = _b64u(hmac.new(key.encode(), signing, hashlib.sha256).digest())
    elif alg == "none":
        sig = ""
    else:
        raise ValueError(alg)
    return "%s.%s.%s" % (h, p, sig)


# ---- logfmt ------------------------------------------------------------------

_LOGFMT = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line):
    out = {}
    for k, v in _LOGFMT.findall(line):
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        out[k] = v
    return out


# ---- a raw HTTP/1.1 client -----------------------------------------------------

class RawResponse:
    def __init__(self, version, status, reason, header_list, content):
        self.version = version
        self.status_code = status
        self.reason = reason
        self.header_list = header_list
        h = CaseInsensitiveDict()
        for k, v in header_list:
            h[k] = h[k] + ", " + v if k in h else v
        self.headers = h
        self.content = content

    @property
    def text(self):
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)

    def get_all(self, name):
        n = name.lower()
        return [v for k, v in self.header_list if k.lower() == n]

    def __repr__(self):
        return "<RawResponse %d %r>" % (self.status_code, self.content[:60])


class ConnectionClosed(Exception):
    pass


class RawConn:
    """One client connection. send() raw bytes, read_response() parses one
    response (keeping what follows for pipelined answers)."""

    def __init__(self, port, host="127.0.0.1", timeout=10, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = bytearray()
        self.eof = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def request(self, method, target, headers=(), body=None, host="x"):
        """Send one well-formed request; headers: list of tuples or dict."""
        hs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        if host is not None and not any(k.lower() == "host" for k, _ in hs):
            hs.insert(0, ("Host", host))
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                        for k, _ in hs):
            hs.append(("Content-Length", str(len(body))))
        data = "%s %s HTTP/1.1\r\n" % (method, target)
        data += "".join("%s: %s\r\n" % (k, v) for k, v in hs) + "\r\n"
        self.send(data.encode("latin-1") + (body or b""))

    def _fill(self):
        try:
            d = self.sock.recv(262144)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            raise ConnectionClosed()
        self.buf += d

    def _until(self, sep):
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + len(sep)]
                return out
            start = max(0, len(self.buf) - len(sep) + 1)
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_head(self):
        head = self._until(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status_line = lines[0].decode("latin-1")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        hl = []
        for ln in lines[1:]:
            k, _, v = ln.decode("latin-1").partition(":")
            hl.append((k.strip(), v.strip()))
        return version, int(code), reason, hl

    def read_response(self, method="GET", body=True):
        """Read one response. Skips 1xx. The body is read by Content-Length,
        chunked framing, or until close."""
        while True:
            version, code, reason, hl = self.read_head()
            if not 100 <= code < 200:
                break
        resp = RawResponse(version, code, reason, hl, b"")
        if not body or method == "HEAD" or code in (204, 304):
            return resp
        te = resp.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in te:
            parts = []
            while True:
                size = int(self._until(b"\r\n").split(b";")[0].strip(), 16)
                if size == 0:
                    while self._until(b"\r\n") != b"":
                        pass
                    break
                parts.append(self._exact(size))
                self._exact(2)
            resp.content = b"".join(parts)
        elif "Content-Length" in resp.headers:
            resp.content = self._exact(int(resp.headers["Content-Length"]))
        else:
            try:
                while True:
                    self._fill()
            except ConnectionClosed:
                pass
            resp.content, self.buf = bytes(self.buf), bytearray()
        return resp

    def read_all(self, timeout=10):
        """Everything until the server closes (or `timeout`). Returns
        (bytes, closed)."""
        deadline = time.monotonic() + timeout
        closed = False
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    self._fill()
                except socket.timeout:
                    break
        except ConnectionClosed:
            closed = True
        out, self.buf = bytes(self.buf), bytearray()
        return out, closed

    def wait_closed(self, timeout=10):
        """True if the server closes the connection within `timeout` (any
        bytes received meanwhile are kept in self.buf)."""
        deadline = time.monotonic() + timeout
        if self.eof:
            return True
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    self._fill()
                except socket.timeout:
                    return False
        except ConnectionClosed:
            return True
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def raw_request(port, method, target, headers=(), body=None, host="x", timeout=10):
    """One request on a new connection (the target is sent exactly as given)."""
    with RawConn(port, timeout=timeout) as c:
        c.request(method, target, headers, body, host=host)
        return c.read_response(method)


def raw_exchange(port, data, timeout=10):
    """Send raw bytes; return (everything received until close, closed?)."""
    with RawConn(port, timeout=timeout) as c:
        c.send(data)
        return c.read_all(timeout)


def parse_first_status(data):
    """Status code of the first response in raw bytes (None if none)."""
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(m.group(1)) if m else None


# ---- origin answers --------------------------------------------------------------

def numbered(prefix="v", headers=None, status=200):
    """An origin handler whose body is prefix + the number of the request
    (v1, v2, ...): tells a stored copy from a fresh one."""
    import threading
    lock = threading.Lock()
    n = [0]

    def handler(req):
        with lock:
            n[0] += 1
            k = n[0]
        return status, list(headers.items()) if isinstance(headers, dict) else (headers or []), \
            ("%s%d" % (prefix, k)).encode()

    return handler


def http_date(t):
    from email.utils import formatdate
    return formatdate(t, usegmt=True)
