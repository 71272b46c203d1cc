"""The scripted origin (origin.py) and the raw client (proxyutil.py) used by
the proxy tests, exercised directly (no strata involved)."""
import threading
import time

import requests

from origin import Gate
from proxyutil import (RawConn, assert_cs, cache_status, make_jwt, parse_logfmt,
                       raw_exchange, wait_until)


def test_route_status_headers_body_and_count(origin):
    origin.route("/a?x=1", status=203, headers={"X-A": "1"}, body=b"hello")
    r = requests.get(origin.url + "/a?x=1", timeout=5)
    assert (r.status_code, r.headers["X-A"], r.content) == (203, "1", b"hello")
    assert origin.count("/a?x=1") == 1 and origin.count("/a") == 0
    assert origin.count(method="GET") == 1
    req = origin.last("/a?x=1")
    assert req.method == "GET" and req.target == "/a?x=1"
    assert req.headers.get("host") == "127.0.0.1:%d" % origin.port
    assert "HOST" in req.headers
    origin.reset()
    assert origin.count() == 0


def test_unknown_path_is_404_no_route(origin):
    r = requests.get(origin.url + "/nope", timeout=5)
    assert (r.status_code, r.content) == (404, b"no route")


def test_repeated_headers_and_method_routes(origin):
    origin.route("/c", headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")], body="x")
    origin.route("/c", method="POST", status=201, body="made")
    with RawConn(origin.port) as c:
        c.request("GET", "/c")
        r = c.read_response()
        assert r.get_all("Set-Cookie") == ["a=1", "b=2"]
        c.request("POST", "/c", body=b"data")
        r = c.read_response()
        assert (r.status_code, r.content) == (201, b"made")
    assert origin.last("/c", "POST").body == b"data"


def test_keep_alive_and_connection_close(origin):
    origin.route("/k", body=b"k")
    with RawConn(origin.port) as c:
        for _ in range(3):
            c.request("GET", "/k")
            assert c.read_response().content == b"k"
        c.request("GET", "/k", headers={"Connection": "close"})
        r = c.read_response()
        assert r.headers["Connection"] == "close"
        assert c.wait_closed(5)
    ids = {r.conn_id for r in origin.matching("/k")}
    assert len(ids) == 1 and [r.conn_seq for r in origin.matching("/k")] == [0, 1, 2, 3]


def test_http10_closes(origin):
    origin.route("/h", body=b"h")
    data, closed = raw_exchange(origin.port, b"GET /h HTTP/1.0\r\n\r\n")
    assert closed and data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\nh")


def test_chunked_request_and_response_bodies(origin):
    origin.route("/ch", body=b"0123456789" * 1000, chunked=True, chunk_size=777)
    with RawConn(origin.port) as c:
        c.send(b"POST /ch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        r = c.read_response()
        assert r.headers["Transfer-Encoding"] == "chunked"
        assert r.content == b"0123456789" * 1000
    assert origin.last("/ch").body == b"hello world"


def test_head_uses_get_route_without_body(origin):
    origin.route("/hd", body=b"12345")
    with RawConn(origin.port) as c:
        c.request("HEAD", "/hd")
        r = c.read_response("HEAD")
        assert r.headers["Content-Length"] == "5" and r.content == b""
        c.request("GET", "/hd")
        assert c.read_response().content == b"12345"


def test_handler_sees_the_request(origin):
    def h(req):
        if req.headers.get("If-None-Match") == '"v1"':
            return 304, {"ETag": '"v1"'}, b""
        return 200, [("ETag", '"v1"')], b"body-" + req.method.encode()
    origin.route("/v", handler=h)
    r = requests.get(origin.url + "/v", timeout=5)
    assert (r.status_code, r.content) == (200, b"body-GET")
    r = requests.get(origin.url + "/v", headers={"If-None-Match": '"v1"'}, timeout=5)
    assert r.status_code == 304


def test_gate_holds_until_released(origin):
    g = origin.gate("/g")
    origin.route("/g", body=b"gated", gate=g)
    results = []

    def client():
        results.append(requests.get(origin.url + "/g", timeout=10).content)

    ts = [threading.Thread(target=client) for _ in range(3)]
    for t in ts:
        t.start()
    g.wait_waiting(3)
    assert results == [] and g.arrived == 3
    g.release()
    for t in ts:
        t.join(10)
    assert results == [b"gated"] * 3


def test_gate_wait_times_out_with_assertion():
    g = Gate()
    t0 = time.monotonic()
    try:
        g.wait_waiting(1, timeout=0.2)
    except AssertionError as e:
        assert "expected 1" in str(e)
    else:
        raise AssertionError("no timeout")
    assert time.monotonic() - t0 < 2


def test_hang_and_stop(origin):
    origin.route("/hang", hang=True)
    c = RawConn(origin.port, timeout=0.3)
    c.request("GET", "/hang")
    assert not c.wait_closed(0.3)
    origin.stop()
    assert c.wait_closed(5)
    c.close()


def test_truncate_closes_mid_response(origin):
    origin.route("/t", body=b"x" * 10000, truncate=100)
    data, closed = raw_exchange(origin.port, b"GET /t HTTP/1.1\r\nHost: x\r\n\r\n")
    assert closed and b"Content-Length: 10000" in data
    assert len(data.split(b"\r\n\r\n", 1)[1]) == 100


def test_abort_sends_nothing(origin):
    origin.route("/ab", abort=True)
    data, closed = raw_exchange(origin.port, b"GET /ab HTTP/1.1\r\nHost: x\r\n\r\n")
    assert closed and data == b""
    assert origin.count("/ab") == 1


def test_drop_if_reused_once(origin):
    origin.route("/w", body=b"w")
    origin.route("/d", body=b"d", drop_if_reused=True)
    with RawConn(origin.port) as c:
        c.request("GET", "/d")  # first request on the connection: answered
        assert c.read_response().content == b"d"
        c.request("GET", "/d")  # reused: dropped
        assert c.wait_closed(5) and c.buf == b""
    with RawConn(origin.port) as c:
        c.request("GET", "/w")
        c.read_response()
        c.request("GET", "/d")  # reused again, but it dropped once already
        assert c.read_response().content == b"d"


def test_stream_with_and_without_length(origin):
    def gen():
        for i in range(100):
            yield bytes([65 + i % 26]) * 1000

    origin.route("/s1", stream=gen, content_length=100000)
    origin.route("/s2", stream=gen)
    r = requests.get(origin.url + "/s1", timeout=5)
    assert r.headers["Content-Length"] == "100000" and len(r.content) == 100000
    r = requests.get(origin.url + "/s2", timeout=5)
    assert r.headers["Transfer-Encoding"] == "chunked" and len(r.content) == 100000


def test_stream_is_sent_as_produced(origin):
    more = threading.Event()

    def gen():
        yield b"first"
        more.wait(10)
        yield b"second"

    origin.route("/sp", stream=gen)
    with RawConn(origin.port) as c:
        c.request("GET", "/sp")
        c.read_head()
        c.sock.settimeout(5)
        while b"first" not in c.buf:
            c._fill()
        assert b"second" not in c.buf
        more.set()
        while b"second" not in c.buf:
            c._fill()


def test_close_delimited_body(origin):
    origin.route("/cd", body=b"until-close", no_content_length=True)
    with RawConn(origin.port) as c:
        c.request("GET", "/cd")
        r = c.read_response()
        assert r.content == b"until-close" and "Content-Length" not in r.headers


def test_request_recorded_before_its_body_arrives(origin):
    origin.route("/up", method="POST", body=b"ok")
    with RawConn(origin.port) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n")
        wait_until(lambda: origin.count("/up") == 1, 5, msg="request head")
        req = origin.last("/up")
        assert not req.complete.is_set()
        c.send(b"3\r\ndef\r\n0\r\n\r\n")
        assert c.read_response().content == b"ok"
        assert req.complete.wait(5) and req.body == b"abcdef"


def test_delay(origin):
    origin.route("/dl", body=b"d", delay=0.3)
    t0 = time.monotonic()
    requests.get(origin.url + "/dl", timeout=5)
    assert time.monotonic() - t0 >= 0.3


def test_wait_count(origin):
    origin.route("/wc")
    threading.Timer(0.1, lambda: requests.get(origin.url + "/wc", timeout=5)).start()
    assert origin.wait_count(1, "/wc", timeout=5) == 1


# ---- helpers of proxyutil -----------------------------------------------------

class _R:
    def __init__(self, cs):
        self.headers = {"Cache-Status": cs}


def test_cache_status_helpers():
    r = _R('origin; hit; detail="a, b", strata;fwd=uri-miss; fwd-status=200;stored')
    assert cache_status(r) == "strata; fwd=uri-miss; fwd-status=200; stored"
    assert_cs(_R("strata; hit; ttl=58"), "strata; hit; ttl=60")
    assert_cs(_R("strata; hit; ttl=-6; detail=swr"), "strata; hit; ttl=-5; detail=swr")
    for bad, exp in (("strata; hit; ttl=61", "strata; hit; ttl=60"),
                     ("strata; hit", "strata; hit; ttl=60"),
                     ("strata; fwd=bypass; fwd-status=200", "strata; fwd=bypass")):
        try:
            assert_cs(_R(bad), exp)
        except AssertionError:
            continue
        raise AssertionError("assert_cs accepted %r for %r" % (bad, exp))


def test_jwt_and_logfmt():
    import base64
    import hashlib
    import hmac
    t = make_jwt({"sub": "alice"}, "k")
    h, p, s = t.split(".")
    assert base64.urlsafe_b64decode(p + "==") == b'{"sub":"alice"}'
    mac = hmac.new(b"k", ("%s.%s" % (h, p)).encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(s + "=") == mac
    assert parse_logfmt('method=GET path="/a b" status=200 cache=hit') == {
        "method": "GET", "path": "/a b", "status": "200", "cache": "hit"}
