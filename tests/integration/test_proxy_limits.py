"""strata serve: request limits (431), client timeouts (slow clients),
upstream timeouts and errors (origin down, gone mid-response), the retry of
idempotent requests on a stale keep-alive origin connection, max_connections."""
import socket
import time

from proxyutil import RawConn, cache_status, parse_first_status, wait_until

CC60 = {"Cache-Control": "max-age=60"}


# ---- header limits -------------------------------------------------------------------

def test_header_bigger_than_max_header_size_is_431(origin, strata):
    origin.route("/h", body=b"ok")
    s = strata(server={"max_header_size": "4KB"})
    r = s.raw("GET", "/h", headers={"X-Big": "a" * 3000})
    assert (r.status_code, r.content) == (200, b"ok")
    with RawConn(s.port, timeout=5) as c:
        c.request("GET", "/h", headers={"X-Big": "a" * 5000}, host=s.host)
        data, closed = c.read_all(5)
    assert parse_first_status(data) == 431 and closed
    assert origin.count() == 1


def test_default_max_header_size_is_32kb(origin, strata):
    origin.route("/h", body=b"ok")
    s = strata()
    r = s.raw("GET", "/h", headers={"X-Big": "a" * 20000})
    assert r.status_code == 200
    with RawConn(s.port, timeout=5) as c:
        c.request("GET", "/h", headers={"X-Big": "a" * 40000}, host=s.host)
        data, closed = c.read_all(5)
    assert parse_first_status(data) == 431 and closed
    assert origin.count() == 1


def test_many_small_headers_add_up_to_max_header_size(origin, strata):
    origin.route("/h", body=b"ok")
    s = strata(server={"max_header_size": "4KB"})
    hs = [("X-H%d" % i, "v" * 100) for i in range(60)]  # ~6.5 KB in all
    with RawConn(s.port, timeout=5) as c:
        c.request("GET", "/h", headers=hs, host=s.host)
        data, closed = c.read_all(5)
    assert parse_first_status(data) == 431 and closed
    assert origin.count() == 0


def test_more_than_max_headers_is_431(origin, strata):
    origin.route("/h", body=b"ok")
    s = strata(server={"max_headers": 10})
    r = s.raw("GET", "/h", headers=[("X-H%d" % i, "v") for i in range(5)])
    assert r.status_code == 200
    with RawConn(s.port, timeout=5) as c:
        c.request("GET", "/h", headers=[("X-H%d" % i, "v") for i in range(20)], host=s.host)
        data, closed = c.read_all(5)
    assert parse_first_status(data) == 431 and closed
    assert origin.count() == 1


def test_default_max_headers_is_100(origin, strata):
    origin.route("/h", body=b"ok")
    s = strata()
    assert s.raw("GET", "/h", headers=[("X-H%d" % i, "v") for i in range(50)]).status_code == 200
    with RawConn(s.port, timeout=5) as c:
        c.request("GET", "/h", headers=[("X-H%d" % i, "v") for i in range(150)], host=s.host)
        data, closed = c.read_all(5)
    assert parse_first_status(data) == 431 and closed
    assert origin.count() == 1


def test_huge_request_target_rejected(origin, strata):
    origin.route("*", body=b"ok")
    s = strata()
    with RawConn(s.port, timeout=5) as c:
        c.request("GET", "/" + "a" * 64000, host=s.host)
        data, closed = c.read_all(5)
    assert parse_first_status(data) in (400, 414, 431) and closed
    assert origin.count() == 0


# ---- slow clients ------------------------------------------------------------------------

def test_header_timeout_closes_a_stalled_request(origin, strata):
    origin.route("*", body=b"ok")
    s = strata(server={"header_timeout": "1s"})
    with RawConn(s.port, timeout=10) as c:
        c.send("GET /slow HTTP/1.1\r\nHost: %s\r\n" % s.host)
        t0 = time.monotonic()
        assert c.wait_closed(6), "stalled request not closed"
        assert time.monotonic() - t0 < 6
        status = parse_first_status(c.buf)
        assert status in (None, 408)
    assert origin.count() == 0


def test_header_timeout_bounds_a_dribbling_client(origin, strata):
    """Slowloris: a byte every 100 ms keeps the socket busy but the whole
    header must arrive within header_timeout."""
    origin.route("*", body=b"ok")
    s = strata(server={"header_timeout": "1s"})
    req = ("GET /slow HTTP/1.1\r\nHost: %s\r\n" % s.host) + "X-Pad: " + "a" * 200
    with RawConn(s.port, timeout=10) as c:
        t0 = time.monotonic()
        closed = False
        for ch in req:
            try:
                c.send(ch)
            except OSError:
                closed = True
                break
            if c.wait_closed(0.1):
                closed = True
                break
            if time.monotonic() - t0 > 8:
                break
        assert closed, "dribbling client still connected after %.1fs" % (time.monotonic() - t0)
        assert time.monotonic() - t0 < 5
    assert origin.count() == 0


def test_idle_timeout_closes_keepalive_connection(origin, strata):
    origin.route("/i", body=b"ok")
    s = strata(server={"idle_timeout": "1s"})
    with RawConn(s.port, timeout=10) as c:
        c.request("GET", "/i", host=s.host)
        assert c.read_response().content == b"ok"
        t0 = time.monotonic()
        assert c.wait_closed(6)
        assert time.monotonic() - t0 >= 0.5


def test_default_idle_timeout_keeps_connection_open(origin, strata):
    origin.route("/i", body=b"ok")
    s = strata()
    with RawConn(s.port, timeout=10) as c:
        c.request("GET", "/i", host=s.host)
        assert c.read_response().content == b"ok"
        assert not c.wait_closed(3)  # default idle_timeout is 60 s
        c.request("GET", "/i", host=s.host)
        assert c.read_response().content == b"ok"


# ---- upstream errors -----------------------------------------------------------------------

def test_upstream_timeout_is_504(origin, strata):
    origin.route("/hang", hang=True)
    s = strata(server={"upstream_timeout": "1s"})
    t0 = time.monotonic()
    r = s.get("/hang")
    assert r.status_code == 504
    assert time.monotonic() - t0 < 8
    assert cache_status(r).startswith("strata; ")
    assert origin.count("/hang") == 1
    origin.route("/after", body=b"fine")
    assert s.get("/after").content == b"fine"


def _blackhole():
    """A listener whose accept queue is full: connects to it hang."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    filler = socket.create_connection(lsock.getsockname(), timeout=2)
    return lsock, filler


def test_upstream_connect_timeout(origin, strata):
    lsock, filler = _blackhole()
    try:
        s = strata(upstream="http://127.0.0.1:%d" % lsock.getsockname()[1],
                   server={"upstream_connect_timeout": "500ms", "upstream_timeout": "20s"})
        t0 = time.monotonic()
        r = s.get("/x", timeout=30)
        elapsed = time.monotonic() - t0
        assert r.status_code in (502, 503, 504)
        assert elapsed < 5, "connect timeout took %.1fs" % elapsed
    finally:
        filler.close()
        lsock.close()


def test_origin_down_is_502(origin, strata):
    s = strata()
    origin.stop()
    r = s.get("/down")
    assert r.status_code == 502
    assert cache_status(r).startswith("strata; ")


def test_origin_closes_without_answer_is_502(origin, strata):
    origin.route("/ab", abort=True)
    s = strata()
    r = s.get("/ab")
    assert r.status_code == 502


def test_origin_gone_mid_response(origin, strata):
    body = bytes(range(256)) * 400  # 100 KiB
    origin.route("/mid", headers=CC60, body=body, truncate=30000)
    s = strata()
    with RawConn(s.port, timeout=10) as c:
        c.request("GET", "/mid", host=s.host)
        data, closed = c.read_all(10)
    assert closed, "client connection left open after the origin went away"
    status = parse_first_status(data)
    if status == 200:  # headers were already sent: the body must be cut short
        got = data.split(b"\r\n\r\n", 1)[1]
        assert len(got) < len(body)
    else:
        assert status in (502, 504), data[:200]
    # the truncated response was not stored
    origin.route("/mid", headers=CC60, body=body)
    r = s.get("/mid")
    assert (r.status_code, r.content) == (200, body)
    assert origin.count("/mid") == 2
    assert s.get("/mid").content == body
    assert origin.count("/mid") == 2


def test_origin_gone_mid_chunked_response(origin, strata):
    body = b"z" * 100000
    origin.route("/midc", headers=CC60, body=body, chunked=True, truncate=20000)
    s = strata()
    with RawConn(s.port, timeout=10) as c:
        c.request("GET", "/midc", host=s.host)
        data, closed = c.read_all(10)
    assert closed
    assert not data.endswith(b"0\r\n\r\n"), "a cut response was ended as if complete"
    origin.route("/midc", headers=CC60, body=b"whole")
    assert s.get("/midc").content == b"whole"
    assert origin.count("/midc") == 2


def test_idempotent_request_retried_on_stale_keepalive_connection(origin, strata):
    origin.route("/warm", body=b"warm")
    origin.route("/retry", body=b"retried", drop_if_reused=True)
    s = strata()
    with RawConn(s.port, timeout=10) as c:  # one client connection: one worker
        c.request("GET", "/warm", host=s.host)
        assert c.read_response().content == b"warm"
        c.request("GET", "/retry", host=s.host)
        r = c.read_response()
    assert (r.status_code, r.content) == (200, b"retried")
    reqs = origin.matching("/retry")
    assert len(reqs) == 2, reqs
    assert reqs[0].conn_seq > 0, "the first attempt was not on a reused connection"
    assert reqs[1].conn_id != reqs[0].conn_id


def test_post_never_retried(origin, strata):
    origin.route("/warm", body=b"warm")
    origin.route("/once", method="POST", body=b"done", drop_if_reused=True)
    s = strata()
    with RawConn(s.port, timeout=10) as c:
        c.request("GET", "/warm", host=s.host)
        assert c.read_response().content == b"warm"
        c.request("POST", "/once", body=b"payload", host=s.host)
        r = c.read_response()
    assert r.status_code == 502
    assert origin.count("/once", "POST") == 1


def test_upstream_keepalive_reuses_connections(origin, strata):
    for p in ("/k1", "/k2", "/k3"):
        origin.route(p, body=p.encode())
    s = strata()
    with RawConn(s.port, timeout=10) as c:
        for p in ("/k1", "/k2", "/k3"):
            c.request("GET", p, host=s.host)
            assert c.read_response().content == p.encode()
    ids = {q.conn_id for q in origin.requests}
    assert len(ids) == 1, [(q.target, q.conn_id) for q in origin.requests]


def test_max_connections(origin, strata):
    origin.route("/c", body=b"ok")
    s = strata(server={"max_connections": 4, "workers": 1})
    held = []
    try:
        for _ in range(4):
            c = RawConn(s.port, timeout=5)
            c.request("GET", "/c", host=s.host)
            assert c.read_response().content == b"ok"
            held.append(c)
        extra = RawConn(s.port, timeout=5)
        held.append(extra)
        try:
            extra.request("GET", "/c", host=s.host)
            data, _ = extra.read_all(1.5)
        except OSError:
            data = b""
        assert parse_first_status(data) in (None, 503), data[:200]
        assert origin.count("/c") == 4, "a fifth connection was served"
    finally:
        for c in held:
            c.close()

    def served():
        try:
            with RawConn(s.port, timeout=2) as c:
                c.request("GET", "/c", host=s.host)
                return c.read_response().status_code == 200
        except OSError:
            return False
    wait_until(served, 10, interval=0.1, msg="a new connection to be served")
