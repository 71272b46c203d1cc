"""strata serve: regression tests for the defects a review found (fixed in
eb1bf35). One test per defect; each fails (or errors) on the build before
the fix. Waits are bounded polls for events; the only sleeps pace clients
that are deliberately slow readers."""
import ctypes
import os
import re
import resource
import select
import signal
import socket
import struct
import threading
import time

import pytest

from origin import Gate
from proxyutil import (ADMIN_TOKEN, ConnectionClosed, assert_cs, cache_status, numbered,
                       wait_until)

CC60 = {"Cache-Control": "max-age=60"}
CC600 = {"Cache-Control": "max-age=600"}
NO_STORE = {"Cache-Control": "no-store"}
MB = 1 << 20


# ---- helpers -------------------------------------------------------------------

def _read(c, method="GET"):
    """c.read_response(), with a truncated response reported as a failure."""
    try:
        return c.read_response(method)
    except ConnectionClosed:
        raise AssertionError("strata closed the connection mid-response (%d bytes of it "
                             "unparsed: %r)" % (len(c.buf), bytes(c.buf[:120])))
    except socket.timeout:
        raise AssertionError("no (complete) response within %.0fs (%d bytes of it unparsed)"
                             % (c.sock.gettimeout(), len(c.buf)))


def _exact(c, n):
    """n body bytes from a RawConn, a short read reported as a failure."""
    try:
        return c._exact(n)
    except ConnectionClosed:
        raise AssertionError("strata closed the connection after %d of %d body bytes"
                             % (len(c.buf), n))


def _reset(c):
    """Close a RawConn with a TCP reset (SO_LINGER 0)."""
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def _split_head(data):
    """(status, {lower-case name: value}, rest) of raw response bytes."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, "no complete response head in %r" % data[:200]
    lines = head.decode("latin-1").split("\r\n")
    hs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hs[k.strip().lower()] = v.strip()
    return int(lines[0].split(" ")[1]), hs, rest


def _dechunk(data):
    """Chunked payload of `data` as far as it goes: (payload, terminated)."""
    out, i = [], 0
    while True:
        j = data.find(b"\r\n", i)
        if j < 0:
            return b"".join(out), False
        size = int(data[i:j].split(b";")[0], 16)
        if size == 0:
            return b"".join(out), True
        piece = data[j + 2:j + 2 + size]
        out.append(piece)
        if len(piece) < size or len(data) < j + 4 + size:
            return b"".join(out), False
        i = j + 4 + size


def _alice_and_bob(s, origin):
    """Two concurrent private requests on one worker must each get their own
    answer (a request record released twice makes them share one)."""
    ga, gb = Gate(), Gate()
    origin.route("/alice", headers=NO_STORE, body=b"ALICE-PRIVATE", gate=ga)
    origin.route("/bob", headers=NO_STORE, body=b"BOB", gate=gb)
    with s.conn(timeout=5) as ca, s.conn(timeout=5) as cb:
        ca.request("GET", "/alice", host=s.host)
        ga.wait_waiting(1, timeout=5)
        cb.request("GET", "/bob", host=s.host)
        gb.wait_waiting(1, timeout=5)
        ga.release()
        ra = _read(ca)
        gb.release()
        rb = _read(cb)
    assert (ra.status_code, ra.content) == (200, b"ALICE-PRIVATE")
    assert_cs(ra, "strata; fwd=uri-miss; fwd-status=200; detail=no-store")
    assert (rb.status_code, rb.content) == (200, b"BOB")
    assert_cs(rb, "strata; fwd=uri-miss; fwd-status=200; detail=no-store")
    assert origin.count("/alice") == 1 and origin.count("/bob") == 1


def _socket_fds(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def _slow_read(sock, rate, timeout=15):
    """Read one response with a Content-Length (or until EOF) at about
    `rate` bytes/s."""
    buf = bytearray()
    want = None
    t0 = time.monotonic()
    sock.settimeout(5)
    while (want is None or len(buf) < want) and time.monotonic() - t0 < timeout:
        try:
            d = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not d:
            break
        buf += d
        if want is None and b"\r\n\r\n" in buf:
            head = bytes(buf[:buf.find(b"\r\n\r\n") + 4])
            m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
            want = len(head) + int(m.group(1)) if m else float("inf")
        ahead = len(buf) / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)  # a slow reader, on purpose
    return bytes(buf)


# ---- connections closed inside the handler's own calls -------------------------------

def test_admin_client_reset_before_reply(origin, strata):
    """An admin client that resets its connection before the reply: the
    failed write closed the connection inside reply(), which then freed the
    request a second time (double free)."""
    s = strata()
    body = b'{"tags":["x"]}'
    req = (b"POST /_strata/invalidate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
           % (ADMIN_TOKEN.encode(), len(body))) + body
    for _ in range(10):
        sk = socket.create_connection(("127.0.0.1", s.admin_port), timeout=5)
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sk.sendall(req)
        sk.close()
        r = s.admin_post("/_strata/invalidate", json={"tags": ["x"]}, timeout=5)
        assert (r.status_code, r.json()["removed"]) == (200, 0)
    assert s.alive()


def test_origin_failure_mid_stream_releases_the_request_once(origin, strata):
    """An origin that dies mid-body aborted the client connection (on_close
    released the request) and then finish() released it again: the freelist
    looped and two later concurrent requests shared one record (one client's
    private answer went to the other)."""
    origin.route("/broken", headers=NO_STORE, body=b"x" * 100000, truncate=10)
    s = strata(server={"workers": 1})
    with s.conn(timeout=5) as c:
        c.request("GET", "/broken", host=s.host)
        data, closed = c.read_all(5)
    assert closed
    status, hs, body = _split_head(data)
    assert (status, hs["content-length"], body) == (200, "100000", b"x" * 10)
    assert hs["cache-status"] == "strata; fwd=uri-miss; fwd-status=200; detail=no-store"
    _alice_and_bob(s, origin)


def test_client_reset_during_miss_releases_the_request_once(origin, strata):
    """A client that resets while its cacheable miss is at the origin: the
    write of the answer failed and closed the connection (releasing the
    request), then finish() released it again."""
    g = Gate()
    origin.route("/slowmiss", headers=CC60, body=b"hello", gate=g)
    s = strata(server={"workers": 1})
    c = s.conn(timeout=5)
    c.request("GET", "/slowmiss", host=s.host)
    g.wait_waiting(1, timeout=5)
    _reset(c)
    g.release()
    # (a request polling here may wait for the fetch: "collapsed")
    wait_until(lambda: cache_status(s.get("/slowmiss", timeout=5)).startswith("strata; hit"),
               timeout=5, msg="the miss stored")
    r = s.get("/slowmiss", timeout=5)
    assert (r.status_code, r.content) == (200, b"hello")
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count("/slowmiss") == 1
    _alice_and_bob(s, origin)


# ---- hits whose write must wait ------------------------------------------------------------

def test_queued_hit_headers_are_copied(origin, strata):
    """A hit queued behind another response (pipelined) kept pointers to
    serve_obj's stack buffers: the status line and tail headers sent later
    were whatever later hits on the worker left there."""
    n = 6 * MB
    origin.route("/big", headers=CC600, body=b"z" * n)
    origin.route("/small", headers=CC600, body=b"small-body")
    origin.route("/other", status=404, headers=CC600, body=b"o" * 77777)
    s = strata(server={"workers": 1})
    for p in ("/big", "/small", "/other"):
        s.get(p)
    with s.conn(timeout=5, rcvbuf=65536) as c:
        c.send(("GET /big HTTP/1.1\r\nHost: %s\r\n\r\n"
                "GET /small HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n")
               % (s.host, s.host))
        _, code, _, _ = c.read_head()  # both requests were read
        assert code == 200
        for _ in range(3):  # other clients' hits on the same worker
            with s.conn(timeout=5) as o:
                o.request("GET", "/other", host=s.host)
                r = _read(o)
                assert (r.status_code, len(r.content)) == (404, 77777)
        assert _exact(c, n) == b"z" * n
        r = _read(c)
        assert (r.status_code, r.content) == (200, b"small-body")
        assert r.headers["Content-Length"] == "10"
        assert r.headers["Cache-Control"] == "max-age=600"
        assert r.headers["Connection"] == "close"
        assert_cs(r, "strata; hit; ttl=600")
        assert c.wait_closed(5)
    assert origin.count() == 3


def test_long_route_cache_control_on_hits(origin, strata):
    """A route cache_control over ~450 bytes overflowed serve_obj's 512-byte
    tail buffer on every hit."""
    cc = "public, max-age=60, x-note=" + "a" * 470
    origin.route("/o", headers=CC60, body=b"hi")
    s = strata(routes=[{"path": "*", "cache_control": cc}])
    r = s.get("/o")
    assert (r.status_code, r.content, r.headers["Cache-Control"]) == (200, b"hi", cc)
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=200; stored")
    for _ in range(2):
        r = s.get("/o")
        assert (r.status_code, r.content, r.headers["Cache-Control"]) == (200, b"hi", cc)
        assert_cs(r, "strata; hit; ttl=60")
    assert origin.count("/o") == 1


def test_hit_to_half_closed_client_is_complete(origin, strata):
    """A client that half-closes after its request (nc -N, HTTP/1.0 tools):
    the EOF closed the connection while the hit was still being written."""
    n = 16 * MB  # well over what the kernel buffers hold
    origin.route("/big", headers=CC600, body=b"z" * n)
    s = strata(http_cache={"max_object_size": "32MB"})
    assert len(s.get("/big").content) == n
    with s.conn(timeout=5, rcvbuf=65536) as c:
        c.request("GET", "/big", host=s.host)
        c.sock.shutdown(socket.SHUT_WR)
        r = _read(c)
        assert r.status_code == 200 and len(r.content) == n and r.content == b"z" * n
        assert_cs(r, "strata; hit; ttl=600")
        assert c.wait_closed(5)
    assert origin.count("/big") == 1


def test_idle_timeout_spares_a_hit_being_written(origin, strata):
    """idle_timeout closed a connection whose hit a slow (but reading)
    client was still receiving."""
    n = 10 * MB
    origin.route("/big", headers=CC600, body=b"z" * n)
    s = strata(server={"idle_timeout": "500ms"}, http_cache={"max_object_size": "32MB"})
    assert len(s.get("/big").content) == n
    with s.conn(timeout=5, rcvbuf=65536) as c:
        c.request("GET", "/big", host=s.host)
        t0 = time.monotonic()
        data = _slow_read(c.sock, rate=5 * MB)  # ~2 s, 4 idle timeouts
        took = time.monotonic() - t0
    status, hs, body = _split_head(data)
    assert status == 200 and hs["cache-status"] in ("strata; hit; ttl=600",
                                                    "strata; hit; ttl=599")
    assert len(body) == n, "got %d of %d body bytes in %.1fs" % (len(body), n, took)
    assert took > 1.0  # the reader was slower than the idle timeout
    assert origin.count("/big") == 1


def test_drain_finishes_a_hit_being_written(origin, strata):
    """On SIGTERM, draining closed idle connections at once, including one
    whose hit was still being written."""
    n = 16 * MB
    origin.route("/big", headers=CC600, body=b"z" * n)
    s = strata(http_cache={"max_object_size": "32MB"})
    assert len(s.get("/big").content) == n
    with s.conn(timeout=5, rcvbuf=65536) as c:
        c.request("GET", "/big", host=s.host)
        _, code, _, hl = c.read_head()
        assert code == 200 and ("Content-Length", str(n)) in hl
        s.proc.send_signal(signal.SIGTERM)
        body = _exact(c, n)
        assert body == b"z" * n
        assert c.wait_closed(5)
    assert s.stop() == 0
    assert origin.count("/big") == 1


def test_pipelined_hits_wait_for_the_client(origin, strata):
    """Pipelined hits were answered without looking at what was queued: a
    client that sends requests and never reads made strata queue responses
    without bound (it read everything the client sent)."""
    origin.route("/big", headers=CC600, body=b"z" * MB)
    s = strata(server={"workers": 1})
    assert len(s.get("/big").content) == MB
    req = ("GET /big HTTP/1.1\r\nHost: %s\r\n\r\n" % s.host).encode()
    total = 4 * MB // len(req)
    rss0 = s.rss_kb()
    with s.conn(timeout=5, rcvbuf=4096) as c:
        # a fixed send buffer: what strata does not read fills it
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        c.sock.setblocking(False)
        data = req * total
        sent = 0
        while sent < len(data):
            try:
                sent += c.sock.send(data[sent:sent + 65536])
            except BlockingIOError:
                # full: strata stopped reading if it stays full for 0.5 s
                _, w, _ = select.select([], [c.sock], [], 0.5)
                if not w:
                    break
        grew = s.rss_kb() - rss0
        assert sent < len(data), "strata read all %d pipelined requests while %d MB of " \
            "answers were unread (RSS +%d KB)" % (total, total, grew)
        assert grew < 20 * 1024, "RSS grew by %d KB" % grew
        c.sock.setblocking(True)
        c.sock.settimeout(5)
        for _ in range(3):  # the client reads: the next answers come
            r = _read(c)
            assert (r.status_code, len(r.content)) == (200, MB)
            assert_cs(r, "strata; hit; ttl=600")
    assert s.alive()
    assert_cs(s.get("/big"), "strata; hit; ttl=600")
    assert origin.count("/big") == 1


def test_lingering_close_reads_the_client_fin(origin, strata):
    """After a `Connection: close` answer strata lingers, reading what the
    client still sends until its FIN. The linger read never started
    (uv_read_start without an alloc callback): every closed connection held
    its socket for the whole LINGER_MS (2 s) even after the client's FIN."""
    origin.route("/x", headers=CC60, body=b"ok")
    s = strata(server={"workers": 1})
    pid = s.proc.pid
    base = _socket_fds(pid)  # listeners; no connection yet
    with s.conn(timeout=5) as c:
        c.request("GET", "/x", host=s.host)
        assert _read(c).content == b"ok"
    conns = []
    try:
        for _ in range(20):
            c = s.conn(timeout=5)
            conns.append(c)
            c.request("GET", "/x", headers={"Connection": "close"}, host=s.host)
            r = _read(c)
            assert (r.status_code, r.content) == (200, b"ok")
            assert_cs(r, "strata; hit; ttl=60")
            assert c.wait_closed(5)  # strata's FIN
            c.sock.shutdown(socket.SHUT_WR)  # ours: the linger is over
        # (+1: strata may keep its origin connection)
        wait_until(lambda: _socket_fds(pid) <= base + 1, timeout=1.0,
                   msg="strata closing 20 client sockets after the clients' FIN "
                       "(%d sockets open, at most %d expected)"
                       % (_socket_fds(pid), base + 1))
    finally:
        for c in conns:
            c.close()
    assert origin.count("/x") == 1


# ---- the origin side -------------------------------------------------------------------

def test_upstream_timeout_waits_while_the_client_is_slow(origin, strata):
    """While strata stops reading the origin for a slow client, the
    upstream_timeout timer kept running and cut the streamed response."""
    n = 24 * MB
    origin.route("/stream", headers=NO_STORE, body=b"s" * n)
    s = strata(server={"upstream_timeout": "500ms"})
    with s.conn(timeout=5, rcvbuf=65536) as c:
        c.request("GET", "/stream", host=s.host)
        time.sleep(1.0)  # a client that reads nothing for two upstream timeouts
        r = _read(c)
    assert r.status_code == 200
    assert len(r.content) == n and r.content == b"s" * n
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=200; detail=no-store")
    assert origin.count("/stream") == 1


def _syn_sent_to(port):
    """True when a local socket is in SYN-SENT to 127.0.0.1:port."""
    with open("/proc/net/tcp") as f:
        for ln in f.readlines()[1:]:
            fs = ln.split()
            if fs[3] == "02" and int(fs[2].split(":")[1], 16) == port:
                return True
    return False


class _LateAcceptOrigin:
    """A one-request origin whose accept queue is full when strata connects:
    strata's SYN is dropped and its connection is up only when the SYN is
    sent again (~1 s later); meanwhile the request body waits in strata.
    Then it reads the request and answers 200 with the body's length."""

    def __init__(self):
        self.got = None
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(0)
        self.port = self.ls.getsockname()[1]
        # fills the accept queue (backlog 0: one connection)
        self.filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.ls.settimeout(10)
            wait_until(lambda: _syn_sent_to(self.port), timeout=10, interval=0.005,
                       msg="strata connecting to the origin")
            self.ls.accept()[0].close()  # the filler: room for the SYN sent again
            c, _ = self.ls.accept()
        except (OSError, AssertionError):
            return
        with c:
            c.settimeout(10)
            buf = b""
            try:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, _, body = buf.partition(b"\r\n\r\n")
                want = int([ln for ln in head.split(b"\r\n")
                            if ln.lower().startswith(b"content-length:")][0].split(b":")[1])
                got = len(body)
                while got < want:
                    d = c.recv(65536)
                    if not d:
                        break
                    got += len(d)
            except OSError:
                got = -1
            self.got = got
            if got == want:
                msg = b"%d" % got
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(msg), msg))

    def close(self):
        self.ls.close()
        self.filler.close()
        self.thread.join(15)


def test_upload_body_queued_before_connect_counted_once(origin, strata):
    """Body bytes kept while the origin connection was not up yet were
    counted twice in the upload queue: with 1 MB of them (the client paused)
    the queue never fell below the low mark again, so the client was never
    resumed and the upload stalled until upstream_timeout."""
    o = _LateAcceptOrigin()
    n = 4 * MB
    try:
        s = strata(upstream="http://127.0.0.1:%d" % o.port,
                   server={"upstream_timeout": "3s"})
        with s.conn(timeout=8) as c:
            c.send(("POST /up HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n"
                    % (s.host, n)).encode())
            t = threading.Thread(target=_sendall_quiet, args=(c.sock, b"u" * n), daemon=True)
            t.start()
            r = _read(c)
            t.join(5)
        assert (r.status_code, r.content) == (200, b"%d" % n), (r, o.got)
        assert_cs(r, "strata; fwd=method")
    finally:
        o.close()
    assert o.got == n


def _sendall_quiet(sock, data):
    try:
        sock.sendall(data)
    except OSError:
        pass


_FD_LIMIT_OK = hasattr(resource, "prlimit")


@pytest.mark.skipif(not _FD_LIMIT_OK, reason="needs resource.prlimit")
def test_origin_connect_failing_inside_up_send(origin, strata):
    """socket() failing (EMFILE) inside up_send reported the error
    synchronously: the request was answered and released, then start_up used
    the freed upstream request (heap-use-after-free)."""
    origin.route("/p", headers=NO_STORE, body=b"ok")
    s = strata(server={"workers": 1})
    pid = s.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    with s.conn(timeout=5) as c:
        # a first answer that needs no origin: the connection is accepted
        c.request("GET", "/p", headers={"Cache-Control": "only-if-cached"}, host=s.host)
        r = _read(c)
        assert r.status_code == 504
        used = {int(fd) for fd in os.listdir("/proc/%d/fd" % pid)}
        low = next(i for i in range(len(used) + 1) if i not in used)
        # from here strata cannot open a descriptor: the origin socket fails
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (low, hard))
        try:
            c.request("POST", "/p", body=b"a=1", host=s.host)
            r = _read(c)
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        assert (r.status_code, r.content) == (502, b"origin unreachable or failed\n")
        assert_cs(r, "strata; fwd=uri-miss; detail=connect-error")
        assert origin.count("/p") == 0
        assert s.alive()
    r = s.post("/p", data=b"a=1")
    assert (r.status_code, r.content) == (200, b"ok")
    assert origin.count("/p") == 1


def test_no_stale_if_error_after_a_streamed_head(origin, strata):
    """A refetch that streams (chunked, over 256 KB) and then breaks: strata
    served the stale object (stale-if-error) after the streamed head and body
    bytes, a second response inside the first one's body."""
    n = {"v": 0}

    def h(req):
        n["v"] += 1
        if n["v"] == 1:
            return 200, {"Cache-Control": "max-age=1, stale-if-error=600"}, b"OLD"
        return 200, CC60, b"N" * 400000, {"chunked": True, "truncate": 300000}

    origin.route("/s", handler=h)
    s = strata()
    r = s.get("/s")
    assert (r.status_code, r.content) == (200, b"OLD")
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=200; stored")
    s.advance(2000)
    with s.conn(timeout=5) as c:
        c.request("GET", "/s", host=s.host)
        data, closed = c.read_all(5)
    assert closed, "the connection stayed open after a broken streamed body"
    assert data.count(b"HTTP/1.") == 1, "a second response inside the body: %r" % (
        data[data.find(b"HTTP/1.", 10):][:300])
    status, hs, rest = _split_head(data)
    assert status == 200 and hs["transfer-encoding"] == "chunked"
    assert hs["cache-status"] == "strata; fwd=stale; fwd-status=200; detail=streaming"
    payload, ended = _dechunk(rest)
    assert not ended and payload == b"N" * len(payload) and 256 * 1024 < len(payload) <= 300000
    assert origin.count("/s") == 2


def test_too_big_response_leaves_a_hit_for_miss_marker(origin, strata):
    """A response over max_object_size left no hit-for-miss marker: every
    later request queued behind another's fetch again."""
    body = b"0123456789abcdef" * 256  # 4 KiB
    origin.route("/tb", headers=CC60, body=body)
    s = strata(http_cache={"max_object_size": "1KB"})
    r = s.get("/tb")
    assert (r.status_code, r.content) == (200, body)
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=200; detail=too-big")
    for _ in range(2):
        r = s.get("/tb")
        assert (r.status_code, r.content) == (200, body)
        assert_cs(r, "strata; fwd=bypass")
    assert origin.count("/tb") == 3


def test_coalesced_waiters_answer_an_origin_5xx_themselves(origin, strata):
    """When the fetch for a stale object failed with a 5xx (stale-if-error
    served), the coalesced waiters looked up again and each went to the
    origin in turn instead of answering (stale) themselves."""
    from proxyutil import wait_waiters
    n = {"v": 0}

    def h(req):
        n["v"] += 1
        if n["v"] == 1:
            return 200, {"Cache-Control": "max-age=1, stale-if-error=600"}, b"OLD"
        return 503, {}, b"down"

    g = Gate()
    origin.route("/e", handler=h, gate=g)
    g.release()
    s = strata(server={"workers": 1})
    assert s.get("/e").content == b"OLD"
    g.close()
    s.advance(2000)
    conns = []
    try:
        for _ in range(4):
            c = s.conn(timeout=10)
            c.request("GET", "/e", host=s.host)
            conns.append(c)
        g.wait_waiting(1, timeout=5)
        wait_waiters(s, 3)
        g.release()
        rs = [_read(c) for c in conns]
    finally:
        for c in conns:
            c.close()
    assert [(r.status_code, r.content) for r in rs] == [(200, b"OLD")] * 4
    # (ttl=-1, or -2 if strata's clock moved on by a real second meanwhile)
    members = sorted(re.sub(r"ttl=-2;", "ttl=-1;", cache_status(r)) for r in rs)
    assert members == ["strata; hit; ttl=-1; detail=sie"] + \
        ["strata; hit; ttl=-1; detail=sie; collapsed"] * 3, members
    assert origin.count("/e") == 2


# ---- cache keys, tags, identity ----------------------------------------------------------

def _xxh3(data, seed):
    lib = ctypes.CDLL("libxxhash.so.0")
    f = lib.XXH3_64bits_withSeed
    f.restype = ctypes.c_uint64
    f.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
    return f(data, len(data), seed)


def _ae_variant(coding):
    """strata's variant hash for `Vary: Accept-Encoding` and one coding
    (route.c: hash_one + hash_accept_encoding)."""
    h = _xxh3(b"accept-encoding", 0 ^ 0x9e3779b97f4a7c15)
    return "%016x" % _xxh3(coding.encode() + b"\0", h)


def test_target_cannot_forge_a_variant_key(origin, strata):
    """The variant key was key + "|v:" + hash, and '|' may appear in a
    target: a request for "/page|v:<hash>" (hash computable) had the key of
    /page's variant and, with no-cache, replaced what its clients get. Key
    parts are now separated by 0x1F, which strata refuses in a target."""
    origin.route("/page", headers={**CC600, "Vary": "Accept-Encoding"}, body=b"REAL PAGE")
    origin.route("/page?q=1", headers={**CC600, "Vary": "Accept-Encoding"}, body=b"REAL Q")
    origin.route("*", handler=lambda req: (200, CC600, b"forged by " + req.target.encode()))
    s = strata()
    ae = {"Accept-Encoding": "gzip"}
    for path, body in (("/page", b"REAL PAGE"), ("/page?q=1", b"REAL Q")):
        r = s.raw("GET", path, ae)
        assert (r.status_code, r.content) == (200, body)
        assert_cs(r, "strata; fwd=uri-miss; fwd-status=200; stored")
        assert_cs(s.raw("GET", path, ae), "strata; hit; ttl=600")
    h = _ae_variant("gzip")
    forged = "/page|v:" + h
    r = s.raw("GET", forged, {"Cache-Control": "no-cache"})
    assert (r.status_code, r.content) == (200, b"forged by " + forged.encode())
    assert_cs(r, "strata; fwd=request; fwd-status=200; stored")
    r = s.raw("GET", "/page", ae)
    assert (r.status_code, r.content) == (200, b"REAL PAGE"), "variant replaced"
    assert_cs(r, "strata; hit; ttl=600")
    # the real separator cannot be sent (in the query, llhttp lets it through)
    r = s.raw("GET", "/page?q=1\x1fv:" + h, {"Cache-Control": "no-cache"})
    assert r.status_code == 400
    r = s.raw("GET", "/page?q=1", ae)
    assert (r.status_code, r.content) == (200, b"REAL Q")
    assert_cs(r, "strata; hit; ttl=600")
    assert origin.count("/page") == 1 and origin.count("/page?q=1") == 1
    assert origin.count() == 3


def test_revalidation_keeps_the_objects_tags(origin, strata):
    """A 304 that freshened an object re-stored it with the tags of the
    stored header block (tag headers stripped) and the 304: the response's
    Surrogate-Key tags were lost, so a tag invalidation missed it."""
    def h(req):
        if req.header("If-None-Match") == '"v1"':
            return 304, {"ETag": '"v1"', "Cache-Control": "max-age=100"}, b""
        return 200, {"ETag": '"v1"', "Cache-Control": "max-age=1",
                     "Surrogate-Key": "prod-1"}, b"version-1"

    origin.route("/t", handler=h)
    s = strata()
    assert_cs(s.get("/t"), "strata; fwd=uri-miss; fwd-status=200; stored")
    s.advance(2000)
    r = s.get("/t")
    assert (r.status_code, r.content) == (200, b"version-1")
    assert_cs(r, "strata; fwd=stale; fwd-status=304")
    assert origin.last("/t").header("If-None-Match") == '"v1"'
    assert_cs(s.get("/t"), "strata; hit; ttl=100")
    assert s.invalidate(tags=["prod-1"])["removed"] == 1
    r = s.get("/t")
    assert (r.status_code, r.content) == (200, b"version-1")
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=200; stored")
    assert origin.count("/t") == 3


def test_per_user_cookie_present_twice_is_no_identity(origin, strata):
    """A per-user cookie sent twice (cookie tossing from a sibling domain):
    strata keyed on the first one, the origin may believe the other."""
    origin.route("/api/me", handler=numbered(headers=CC60))
    s = strata(routes=[{"path": "/api/me*", "per_user": True,
                        "user_from": "cookie:sessionid"}])
    for i, hs in enumerate(([("Cookie", "sessionid=aaa; sessionid=bbb")],
                            [("Cookie", "sessionid=aaa"), ("Cookie", "sessionid=bbb")],
                            [("Cookie", "sessionid=aaa; sessionid=bbb")]), 1):
        r = s.raw("GET", "/api/me", hs)
        assert (r.status_code, r.content) == (200, b"v%d" % i)
        assert_cs(r, "strata; fwd=bypass; detail=no-identity")
    r = s.raw("GET", "/api/me", [("Cookie", "sessionid=aaa")])
    assert r.content == b"v4"
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=200; stored")
    r = s.raw("GET", "/api/me", [("Cookie", "sessionid=aaa")])
    assert r.content == b"v4"
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count("/api/me") == 4


# ---- conditional requests, Cache-Status ----------------------------------------------------

def test_stored_404_is_not_answered_304(origin, strata):
    """If-None-Match matching a stored 404's ETag got a 304: preconditions
    apply only to a response that would be 2xx (RFC 9110 13.2.1)."""
    origin.route("/nf", status=404, headers={**CC60, "ETag": '"e404"'}, body=b"not here")
    s = strata()
    r = s.get("/nf")
    assert (r.status_code, r.content) == (404, b"not here")
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=404; stored")
    for inm in ('"e404"', "*"):
        r = s.get("/nf", headers={"If-None-Match": inm})
        assert (r.status_code, r.content) == (404, b"not here")
        assert_cs(r, "strata; hit; ttl=60")
    assert origin.count("/nf") == 1


def test_refetch_of_stale_object_without_validators_is_fwd_stale(origin, strata):
    """Cache-Status said fwd=uri-miss when a stale object without validators
    (kept for its stale-if-error window) was fetched again: it was in the
    cache, so fwd=stale (RFC 9211)."""
    origin.route("/nv", handler=numbered(
        headers={"Cache-Control": "max-age=10, stale-if-error=600"}))
    s = strata()
    r = s.get("/nv")
    assert r.content == b"v1"
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=200; stored")
    s.advance(11000)
    r = s.get("/nv")
    assert (r.status_code, r.content) == (200, b"v2")
    assert_cs(r, "strata; fwd=stale; fwd-status=200; stored")
    req = origin.last("/nv")
    assert req.header("If-None-Match") is None and req.header("If-Modified-Since") is None
    r = s.get("/nv")
    assert r.content == b"v2"
    assert_cs(r, "strata; hit; ttl=10")
    assert origin.count("/nv") == 2


def test_client_reset_before_its_hit_is_written_closes_the_connection(origin, strata):
    """A client that resets before its (large) hit is written: the failed
    write schedules the close, and the end of the request must not cancel
    it (the connection stayed open for good, and SIGTERM waited out the
    drain)."""
    origin.route("/big", headers=CC60, body=b"b" * (4 << 20))
    s = strata(server={"workers": 1})
    pid = s.proc.pid
    assert len(s.get("/big").content) == 4 << 20
    base = _socket_fds(pid)
    for _ in range(5):
        c = s.conn(timeout=5)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.request("GET", "/big", host=s.host)
        _reset(c)
    wait_until(lambda: _socket_fds(pid) <= base, timeout=5,
               msg="strata closing 5 reset connections (%d sockets open, %d before)"
                   % (_socket_fds(pid), base))
    t0 = time.monotonic()
    assert s.stop() == 0
    assert time.monotonic() - t0 < 5, "SIGTERM waited for connections that were gone"
