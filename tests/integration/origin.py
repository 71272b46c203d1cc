"""A scripted origin server for strata's proxy tests (stdlib only).

    o = Origin(); o.start()            # binds 127.0.0.1:0; o.port, o.url
    o.route("/a?x=1", headers={"Cache-Control": "max-age=60"}, body=b"hello")
    ... requests through strata ...
    assert o.count("/a?x=1") == 1
    o.stop()

It speaks HTTP/1.1 with keep-alive (one thread per connection), honours
`Connection: close` and HTTP/1.0 (closes unless `Connection: keep-alive`), and
reads request bodies framed by Content-Length or `Transfer-Encoding: chunked`.

Routes are looked up by (method, exact target incl. query string), then by
target for any method, then the "*" route; anything else is 404 "no route".
A HEAD request uses the GET route and gets no body.

Per route:
  status, headers        headers: a dict or a list of (name, value) tuples
                         (repeat a name in the list to send it twice)
  body                   bytes or str
  handler(req)           dynamic answer: returns (status, headers, body) or
                         (status, headers, body, options) where options is a
                         dict of the per-answer keys below
  delay                  seconds to wait before answering
  chunked                send the body with Transfer-Encoding: chunked
  chunk_size             bytes per chunk for a bytes body (default 4096)
  stream                 zero-argument callable returning an iterable of
                         bytes: the body is sent piece by piece as produced,
                         never held whole (Content-Length from
                         content_length=N if given, else chunked)
  content_length         with stream: announce this Content-Length
  no_content_length      send neither Content-Length nor chunked: the body
                         ends when the origin closes the connection
  gate                   a Gate: the answer is held until gate.release()
  hang                   never answer (until stop()); for timeout tests
  truncate=N             announce the whole body, send only N bytes of it and
                         close the connection (origin gone mid-response)
  abort                  close the connection after reading the request,
                         without a byte of response
  drop_if_reused         once: when the request arrives on a connection that
                         already served a request, close it without answering
                         (a stale keep-alive connection); later ones answer
  close                  send `Connection: close` and close after answering

Recorded requests (o.requests, in arrival order) are appended as soon as the
request head is read, so a test can see a request whose body is still
streaming; req.complete is set once the body is read (req.aborted if the
client went away first). o.count() counts every request head received.
"""
import http
import socket
import threading
import time

__all__ = ["Origin", "Gate", "Request", "HeaderList"]


class HeaderList(list):
    """A list of (name, value) tuples with case-insensitive lookups."""

    def get(self, name, default=None):
        vals = self.get_all(name)
        return ", ".join(vals) if vals else default

    def get_all(self, name):
        n = name.lower()
        return [v for k, v in self if k.lower() == n]

    def __contains__(self, item):
        if isinstance(item, str):
            n = item.lower()
            return any(k.lower() == n for k, _ in self)
        return list.__contains__(self, item)

    def __getitem__(self, key):
        if isinstance(key, str):
            v = self.get(key)
            if v is None:
                raise KeyError(key)
            return v
        return list.__getitem__(self, key)


class Request:
    """One request as the origin received it."""

    def __init__(self, method, target, version, headers, conn_id, conn_seq):
        self.method = method
        self.target = target
        self.path = target  # the exact target, query string included
        self.version = version
        self.headers = headers  # HeaderList
        self.body = b""
        self.conn_id = conn_id  # which origin connection carried it
        self.conn_seq = conn_seq  # 0 for the first request on that connection
        self.time = time.monotonic()
        self.complete = threading.Event()
        self.aborted = False

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def __repr__(self):
        return "<Request %s %s conn=%d#%d>" % (self.method, self.target, self.conn_id,
                                               self.conn_seq)


class Gate:
    """Holds the answers of the routes it is attached to until released.

    g = o.gate("/slow")              # attach to a route (created if absent)
    ... fire client requests ...
    g.wait_waiting(1)                # one request is held at the origin
    g.release()                      # answer it (and everything after)
    """

    def __init__(self):
        self._cv = threading.Condition()
        self._open = False
        self.waiting = 0  # requests currently held
        self.arrived = 0  # requests that reached the gate in total

    def enter(self, stop_event, limit=60):
        with self._cv:
            self.arrived += 1
            self.waiting += 1
            self._cv.notify_all()
            deadline = time.monotonic() + limit
            while not self._open and not stop_event.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(min(left, 0.05))
            self.waiting -= 1
            self._cv.notify_all()

    def release(self):
        with self._cv:
            self._open = True
            self._cv.notify_all()

    def close(self):
        with self._cv:
            self._open = False

    def wait_waiting(self, n, timeout=10):
        """Wait until at least n requests are held; AssertionError if not."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self.waiting < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "origin gate: %d request(s) waiting after %.1fs, expected %d"
                        % (self.waiting, timeout, n))
                self._cv.wait(left)

    def wait_arrived(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        with self._cv:
            while self.arrived < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "origin gate: %d request(s) arrived after %.1fs, expected %d"
                        % (self.arrived, timeout, n))
                self._cv.wait(left)


_ROUTE_KEYS = {"status", "headers", "body", "delay", "chunked", "chunk_size", "handler",
               "stream", "content_length", "no_content_length", "gate", "hang",
               "truncate", "abort", "drop_if_reused", "close"}


class _Route:
    def __init__(self, **kw):
        self.__dict__.update(kw)
        self.dropped = False


class _ClientGone(Exception):
    pass


def _norm_headers(h):
    if h is None:
        return []
    if isinstance(h, dict):
        return [(str(k), str(v)) for k, v in h.items()]
    return [(str(k), str(v)) for k, v in h]


def _to_bytes(b):
    if b is None:
        return b""
    if isinstance(b, str):
        return b.encode()
    return bytes(b)


class _Reader:
    """Buffered reads from a connected socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _recv(self):
        try:
            d = self.sock.recv(262144)
        except (OSError, socket.timeout):
            d = b""
        if not d:
            raise _ClientGone()
        return d

    def until(self, sep, limit=1 << 20):
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise _ClientGone()
            start = max(0, len(self.buf) - len(sep) + 1)
            self.buf += self._recv()

    def exact(self, n):
        if len(self.buf) >= n:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        parts = [bytes(self.buf)]
        have = len(self.buf)
        self.buf = bytearray()
        while have < n:
            d = self._recv()
            parts.append(d)
            have += len(d)
        data = b"".join(parts)
        self.buf = bytearray(data[n:])
        return data[:n]


class Origin:
    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.port = None
        self.requests = []
        self.connections = 0  # connections accepted so far
        self._routes = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks = set()
        self._threads = []
        self._lsock = None
        self._accept_thread = None

    # ---- lifecycle -------------------------------------------------------

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, 0))
        s.listen(256)
        self._lsock = s
        self.port = s.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name="origin-accept")
        self._accept_thread.start()
        return self

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def stop(self):
        """Stop listening and close every connection (held answers end)."""
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            self._lsock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        try:
            self._lsock.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for c in socks:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._accept_thread:
            self._accept_thread.join(5)
        for t in list(self._threads):
            t.join(2)

    @property
    def running(self):
        return self._lsock is not None and not self._stop.is_set()

    # ---- script ----------------------------------------------------------

    def route(self, path, status=200, headers=None, body=b"", delay=0, chunked=False,
              handler=None, method=None, **kw):
        """Set the answer for `path` (exact target incl. query; "*" = any)."""
        unknown = set(kw) - _ROUTE_KEYS
        if unknown:
            raise TypeError("unknown route option(s): %s" % ", ".join(sorted(unknown)))
        r = _Route(status=status, headers=_norm_headers(headers), body=_to_bytes(body),
                   delay=delay, chunked=chunked, handler=handler,
                   chunk_size=kw.get("chunk_size", 4096), stream=kw.get("stream"),
                   content_length=kw.get("content_length"),
                   no_content_length=kw.get("no_content_length", False),
                   gate=kw.get("gate"), hang=kw.get("hang", False),
                   truncate=kw.get("truncate"), abort=kw.get("abort", False),
                   drop_if_reused=kw.get("drop_if_reused", False),
                   close=kw.get("close", False))
        with self._lock:
            self._routes[(method.upper() if method else None, path)] = r
        return r

    def gate(self, path=None, method=None):
        """A new Gate; attached to the route of `path` if given (the route
        is created with defaults if it does not exist yet)."""
        g = Gate()
        if path is not None:
            with self._lock:
                r = self._routes.get((method, path))
            if r is None:
                r = self.route(path, method=method)
            r.gate = g
        return g

    def clear_routes(self):
        with self._lock:
            self._routes.clear()

    def reset(self):
        """Forget the recorded requests (routes stay)."""
        with self._lock:
            self.requests = []

    def count(self, path=None, method=None):
        with self._lock:
            reqs = list(self.requests)
        return sum(1 for r in reqs
                   if (path is None or r.target == path)
                   and (method is None or r.method == method.upper()))

    def matching(self, path=None, method=None):
        with self._lock:
            reqs = list(self.requests)
        return [r for r in reqs
                if (path is None or r.target == path)
                and (method is None or r.method == method.upper())]

    def last(self, path=None, method=None):
        m = self.matching(path, method)
        assert m, "origin received no request for %s %s" % (method or "*", path or "*")
        return m[-1]

    def wait_count(self, n, path=None, method=None, timeout=10):
        """Wait (bounded) until count(path, method) >= n; returns the count."""
        deadline = time.monotonic() + timeout
        while True:
            c = self.count(path, method)
            if c >= n or time.monotonic() > deadline:
                return c
            time.sleep(0.01)

    # ---- server ----------------------------------------------------------

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self._lsock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                cid = self.connections
                self._socks.add(c)
            t = threading.Thread(target=self._serve_conn, args=(c, cid), daemon=True,
                                 name="origin-conn-%d" % cid)
            self._threads.append(t)
            t.start()

    def _lookup(self, method, target):
        with self._lock:
            for key in ((method, target), ("GET", target) if method == "HEAD" else None,
                        (None, target), (method, "*"), (None, "*")):
                if key is not None and key in self._routes:
                    return self._routes[key]
        return None

    def _serve_conn(self, c, cid):
        c.settimeout(120)
        rd = _Reader(c)
        seq = 0
        try:
            while not self._stop.is_set():
                keep = self._serve_one(c, rd, cid, seq)
                seq += 1
                if not keep:
                    break
        except (_ClientGone, OSError):
            pass
        finally:
            with self._lock:
                self._socks.discard(c)
            try:
                c.close()
            except OSError:
                pass

    def _serve_one(self, c, rd, cid, seq):
        head = rd.until(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        while lines and lines[0] == b"":  # tolerate stray CRLF between requests
            lines.pop(0)
        if not lines:
            raise _ClientGone()
        parts = lines[0].decode("latin-1").split(" ")
        if len(parts) != 3:
            c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                      b"Connection: close\r\n\r\n")
            return False
        method, target, version = parts
        hl = HeaderList()
        for ln in lines[1:]:
            k, _, v = ln.decode("latin-1").partition(":")
            hl.append((k.strip(), v.strip()))
        req = Request(method, target, version, hl, cid, seq)
        with self._lock:
            self.requests.append(req)
        # body
        try:
            te = (hl.get("Transfer-Encoding") or "").lower()
            if "chunked" in te:
                body = []
                while True:
                    size_line = rd.until(b"\r\n").split(b";")[0].strip()
                    size = int(size_line, 16)
                    if size == 0:
                        while rd.until(b"\r\n") != b"":  # trailers
                            pass
                        break
                    body.append(rd.exact(size))
                    rd.exact(2)
                req.body = b"".join(body)
            elif hl.get("Content-Length"):
                req.body = rd.exact(int(hl.get_all("Content-Length")[0]))
        except (_ClientGone, ValueError):
            req.aborted = True
            req.complete.set()
            raise _ClientGone()
        req.complete.set()

        conn_hdr = (hl.get("Connection") or "").lower()
        if version == "HTTP/1.0":
            keep = "keep-alive" in conn_hdr
        else:
            keep = "close" not in conn_hdr

        r = self._lookup(method, target)
        if r is None:
            r = _Route(status=404, headers=[("Content-Type", "text/plain")],
                       body=b"no route", delay=0, chunked=False, handler=None,
                       chunk_size=4096, stream=None, content_length=None,
                       no_content_length=False, gate=None, hang=False, truncate=None,
                       abort=False, drop_if_reused=False, close=False)
            r.dropped = False

        if r.drop_if_reused and seq > 0:
            with self._lock:
                drop = not r.dropped
                r.dropped = True
            if drop:
                return False  # close without a byte of answer
        if r.abort:
            return False
        if r.hang:
            self._stop.wait(300)
            return False
        if r.gate is not None:
            r.gate.enter(self._stop)
        if r.delay:
            self._stop.wait(r.delay)

        status, headers, body = r.status, list(r.headers), r.body
        opts = {}
        if r.handler is not None:
            res = r.handler(req)
            status, headers, body = res[0], _norm_headers(res[1]), res[2]
            if len(res) > 3:
                opts = dict(res[3])
        chunked = opts.get("chunked", r.chunked)
        stream = opts.get("stream", r.stream)
        content_length = opts.get("content_length", r.content_length)
        no_cl = opts.get("no_content_length", r.no_content_length)
        truncate = opts.get("truncate", r.truncate)
        close = opts.get("close", r.close)

        if stream is None and not isinstance(body, (bytes, bytearray, str, type(None))):
            it = body  # a handler may return an iterable body
            stream, body = (lambda: it), None
        body = _to_bytes(body) if stream is None else None

        if close or no_cl:
            keep = False
        names = {k.lower() for k, _ in headers}
        no_body_status = status in (204, 304) or 100 <= status < 200
        out = headers[:]
        if not no_body_status:
            if stream is not None:
                if content_length is not None and "content-length" not in names:
                    out.append(("Content-Length", str(content_length)))
                elif content_length is None and not no_cl:
                    chunked = True
            if chunked and not no_cl:
                if "transfer-encoding" not in names:
                    out.append(("Transfer-Encoding", "chunked"))
            elif (stream is None and not no_cl and "content-length" not in names):
                out.append(("Content-Length", str(len(body))))
        if not keep and "connection" not in names:
            out.append(("Connection", "close"))
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        head = ["HTTP/1.1 %d %s" % (status, reason)]
        head += ["%s: %s" % (k, v) for k, v in out]
        c.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if method == "HEAD" or no_body_status:
            return keep

        sent = 0
        limit = truncate

        def send(piece):
            nonlocal sent
            if limit is not None:
                piece = piece[:max(0, limit - sent)]
            if not piece:
                return
            if chunked and not no_cl:
                c.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                c.sendall(piece)
            sent += len(piece)

        if stream is not None:
            for piece in stream():
                send(_to_bytes(piece))
                if limit is not None and sent >= limit:
                    break
        elif chunked:
            cs = max(1, r.chunk_size)
            for i in range(0, len(body), cs):
                send(body[i:i + cs])
        else:
            send(body)
        if limit is not None:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return False
        if chunked and not no_cl:
            c.sendall(b"0\r\n\r\n")
        return keep
