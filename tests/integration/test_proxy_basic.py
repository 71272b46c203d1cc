"""strata serve: proxying, the request normalisation and the key grammar
(DESIGN "HTTP cache behaviour" / "One request, one key"), HEAD, Range."""
import pytest

from proxyutil import assert_cs, cache_status, numbered

CC60 = {"Cache-Control": "max-age=60"}
STORED = "strata; fwd=uri-miss; fwd-status=200; stored"


def test_get_proxied_stored_then_hit(origin, strata):
    origin.route("/a", headers={**CC60, "X-Origin": "yes", "Content-Type": "text/plain"},
                 body=b"hello")
    s = strata()
    r = s.get("/a")
    assert (r.status_code, r.content, r.headers["X-Origin"]) == (200, b"hello", "yes")
    assert r.headers["Content-Type"] == "text/plain"
    assert_cs(r, STORED)
    r = s.get("/a")
    assert (r.status_code, r.content, r.headers["X-Origin"]) == (200, b"hello", "yes")
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count("/a") == 1


def test_origin_status_and_body_passed_through(origin, strata):
    origin.route("/teapot", status=418, headers={"X-T": "1"}, body=b"short and stout")
    s = strata()
    r = s.get("/teapot")
    assert (r.status_code, r.content, r.headers["X-T"]) == (418, b"short and stout", "1")
    r = s.get("/missing")
    assert (r.status_code, r.content) == (404, b"no route")
    assert origin.count() == 2


def test_post_body_forwarded_not_cached(origin, strata):
    origin.route("/p", method="POST", headers=CC60, handler=lambda req: (
        201, CC60, b"got:" + req.body))
    s = strata()
    for i in range(2):
        r = s.post("/p", data=b"payload-%d" % i)
        assert (r.status_code, r.content) == (201, b"got:payload-%d" % i)
        assert_cs(r, "strata; fwd=method")
    assert origin.count("/p", "POST") == 2
    assert origin.last("/p").body == b"payload-1"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS"])
def test_every_method_is_forwarded(origin, strata, method):
    origin.route("/m", method=method, headers=CC60, handler=lambda req: (
        200, CC60, req.method.encode() + b":" + req.body))
    s = strata()
    body = b"" if method in ("DELETE", "OPTIONS") else b"data"
    for _ in range(2):
        r = s.request(method, "/m", data=body)
        assert (r.status_code, r.content) == (200, method.encode() + b":" + body)
        assert_cs(r, "strata; fwd=method")
    assert origin.count("/m", method) == 2


def test_head_shares_gets_key(origin, strata):
    origin.route("/h", headers=CC60, body=b"0123456789")
    s = strata()
    assert s.get("/h").content == b"0123456789"
    r = s.head("/h")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["Content-Length"] == "10"
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count("/h") == 1 and origin.count(method="HEAD") == 0


def test_head_miss_fetches_full_object_with_get(origin, strata):
    origin.route("/hm", headers=CC60, body=b"full body")
    s = strata()
    r = s.head("/hm")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["Content-Length"] == "9"
    assert_cs(r, STORED)
    assert origin.count("/hm", "GET") == 1 and origin.count(method="HEAD") == 0
    r = s.get("/hm")
    assert (r.status_code, r.content) == (200, b"full body")
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count("/hm") == 1


def test_host_is_lowercased_in_the_key(origin, strata):
    origin.route("/host", headers=CC60, handler=numbered(headers=CC60))
    s = strata()
    r = s.raw("GET", "/host", host="EXAMPLE.com")
    assert (r.status_code, r.content) == (200, b"v1")
    r = s.raw("GET", "/host", host="example.COM")
    assert (r.status_code, r.content) == (200, b"v1")
    assert_cs(r, "strata; hit; ttl=60")
    r = s.raw("GET", "/host", host="other.example")
    assert r.content == b"v2"
    assert origin.count("/host") == 2


@pytest.mark.parametrize("variant", ["/norm/%61bc", "/norm/%61%62%63", "/norm/./abc",
                                     "/norm/x/../abc", "/norm/x/%2E%2E/abc"])
def test_normalised_paths_share_a_key(origin, strata, variant):
    origin.route("/norm/abc", headers=CC60, handler=numbered(headers=CC60))
    s = strata()
    assert s.raw("GET", "/norm/abc").content == b"v1"
    r = s.raw("GET", variant)
    assert (r.status_code, r.content) == (200, b"v1")
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count() == 1


def test_origin_receives_the_normalised_path(origin, strata):
    origin.route("/norm/abc", headers=CC60, body=b"abc")
    s = strata()
    r = s.raw("GET", "/norm/%61b%63")
    assert (r.status_code, r.content) == (200, b"abc")
    assert [q.target for q in origin.requests] == ["/norm/abc"]


def test_percent_encoding_hex_case_and_reserved_slash(origin, strata):
    origin.route("/e/a%2Fb", headers=CC60, handler=numbered("enc", CC60))
    origin.route("/e/a/b", headers=CC60, handler=numbered("slash", CC60))
    s = strata()
    assert s.raw("GET", "/e/a%2fb").content == b"enc1"
    r = s.raw("GET", "/e/a%2Fb")  # hex upper-cased: same key
    assert r.content == b"enc1"
    assert_cs(r, "strata; hit; ttl=60")
    r = s.raw("GET", "/e/a/b")  # an encoded slash is not a slash
    assert r.content == b"slash1"
    assert_cs(r, STORED)
    assert origin.count("/e/a%2Fb") == 1 and origin.count("/e/a/b") == 1


def test_query_is_kept_as_received(origin, strata):
    targets = ["/q?b=2&a=1", "/q?a=1&b=2", "/q?a=%41", "/q?a=A", "/q"]
    for t in targets:
        origin.route(t, headers=CC60, body=t.encode())
    s = strata()
    for t in targets:
        r = s.raw("GET", t)
        assert (r.status_code, r.content) == (200, t.encode())
        assert_cs(r, STORED)
    for t in targets:
        r = s.raw("GET", t)
        assert r.content == t.encode()
        assert_cs(r, "strata; hit; ttl=60")
    assert sorted(q.target for q in origin.requests) == sorted(targets)


def test_percent_encoded_admin_matches_admin_route(origin, strata):
    origin.route("/admin/x", headers={"Cache-Control": "public, max-age=60"}, body=b"adm")
    s = strata(routes=[{"path": "/admin/*", "cache": False}])
    for target in ("/admin/x", "/%61dmin/x", "/%61%64%6d%69%6e/x", "/static/../admin/x"):
        r = s.raw("GET", target)
        assert (r.status_code, r.content) == (200, b"adm"), target
        assert_cs(r, "strata; fwd=bypass")
    assert origin.count("/admin/x") == 4


@pytest.mark.parametrize("name,value", [
    ("X-Forwarded-Host", "evil.example"),
    ("X-Original-URL", "/admin/secret"),
    ("X-Rewrite-URL", "/admin/secret"),
    ("X-HTTP-Method-Override", "DELETE"),
])
def test_strip_request_headers_before_key_and_origin(origin, strata, name, value):
    origin.route("/sh", headers=CC60, handler=lambda req: (
        200, CC60, ("seen=%s" % req.headers.get(name)).encode()))
    s = strata()
    r = s.get("/sh", headers={name: value})
    assert (r.status_code, r.content) == (200, b"seen=None")
    assert name not in origin.last("/sh").headers
    assert origin.last("/sh").method == "GET"
    r = s.get("/sh")  # same key without the header
    assert r.content == b"seen=None"
    assert_cs(r, "strata; hit; ttl=60")
    r = s.get("/sh", headers={name: "other-" + value})
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count("/sh") == 1


def test_configured_strip_request_headers(origin, strata):
    origin.route("/cs", headers=CC60, body=b"x")
    s = strata(server={"strip_request_headers": ["X-Debug-Secret"]})
    s.get("/cs", headers={"X-Debug-Secret": "1"})
    assert "X-Debug-Secret" not in origin.last("/cs").headers
    assert_cs(s.get("/cs"), "strata; hit; ttl=60")


def test_hop_by_hop_headers_not_forwarded(origin, strata):
    origin.route("/hop", body=b"hop")
    s = strata()
    r = s.raw("GET", "/hop", headers=[
        ("Connection", "keep-alive, X-Secret"), ("X-Secret", "s"), ("Keep-Alive", "300"),
        ("TE", "trailers"), ("Trailer", "X-T"), ("Proxy-Authorization", "Basic eDp5"),
        ("Proxy-Connection", "keep-alive"), ("X-Kept", "k")])
    assert (r.status_code, r.content) == (200, b"hop")
    h = origin.last("/hop").headers
    for name in ("X-Secret", "Keep-Alive", "TE", "Trailer", "Proxy-Authorization",
                 "Proxy-Connection"):
        assert name not in h, name
    assert h.get("X-Kept") == "k"


def test_x_forwarded_for_and_proto_set_by_strata(origin, strata):
    origin.route("/xff", body=b"x")
    s = strata()
    s.get("/xff", headers={"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"})
    h = origin.last("/xff").headers
    assert h.get("X-Forwarded-For").replace(" ", "").split(",")[-1] == "127.0.0.1"
    assert h.get("X-Forwarded-Proto") == "http"


def test_connect_is_405(origin, strata):
    s = strata()
    with s.conn() as c:
        c.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        r = c.read_response()
    assert r.status_code == 405
    assert origin.count() == 0


def test_upgrade_header_dropped(origin, strata):
    origin.route("/ws", body=b"plain")
    s = strata()
    r = s.raw("GET", "/ws", headers=[("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                     ("Sec-WebSocket-Version", "13"),
                                     ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")])
    assert (r.status_code, r.content) == (200, b"plain")
    assert "Upgrade" not in origin.last("/ws").headers


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_body_on_get_or_head_rejected(origin, strata, method, framing):
    origin.route("/gb", body=b"x")
    s = strata()
    if framing == "length":
        req = "%s /gb HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n\r\nhello" % (method, s.host)
    else:
        req = ("%s /gb HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
               "5\r\nhello\r\n0\r\n\r\n" % (method, s.host))
    with s.conn() as c:
        c.send(req)
        r = c.read_response(method)
        assert r.status_code == 400
        assert c.wait_closed(5)
    assert origin.count() == 0


def test_missing_host_is_400(origin, strata):
    origin.route("/nh", body=b"x")
    s = strata()
    with s.conn() as c:
        c.send(b"GET /nh HTTP/1.1\r\nAccept: */*\r\n\r\n")
        assert c.read_response().status_code == 400
    assert origin.count() == 0


def test_duplicate_host_is_400(origin, strata):
    origin.route("/dh", body=b"x")
    s = strata()
    with s.conn() as c:
        c.send(("GET /dh HTTP/1.1\r\nHost: %s\r\nHost: evil.example\r\n\r\n" % s.host))
        assert c.read_response().status_code == 400
    with s.conn() as c:
        c.send(("GET /dh HTTP/1.1\r\nHost: %s\r\nHost: %s\r\n\r\n" % (s.host, s.host)))
        assert c.read_response().status_code == 400
    assert origin.count() == 0


def test_server_hosts_allowlist(origin, strata):
    origin.route("/al", headers=CC60, body=b"ok")
    s = strata(server={"hosts": ["good.example"]})
    r = s.raw("GET", "/al", host="good.example")
    assert (r.status_code, r.content) == (200, b"ok")
    r = s.raw("GET", "/al", host="bad.example")
    assert r.status_code == 400
    assert origin.count() == 1


# ---- Range ------------------------------------------------------------------------

BODY1000 = bytes(range(256)) * 3 + bytes(range(232))


def test_range_answered_206_from_stored_object(origin, strata):
    origin.route("/r", headers=CC60, body=BODY1000)
    s = strata()
    assert s.get("/r").content == BODY1000
    for spec, lo, hi in (("bytes=0-9", 0, 9), ("bytes=990-", 990, 999),
                         ("bytes=-5", 995, 999), ("bytes=100-199", 100, 199),
                         ("bytes=900-5000", 900, 999)):
        r = s.get("/r", headers={"Range": spec})
        assert r.status_code == 206, spec
        assert r.headers["Content-Range"] == "bytes %d-%d/1000" % (lo, hi), spec
        assert r.headers["Content-Length"] == str(hi - lo + 1)
        assert r.content == BODY1000[lo:hi + 1], spec
        assert_cs(r, "strata; hit; ttl=60")
    assert origin.count("/r") == 1


def test_range_on_a_miss_fetches_the_full_object(origin, strata):
    origin.route("/rm", headers=CC60, body=BODY1000)
    s = strata()
    r = s.get("/rm", headers={"Range": "bytes=10-19", "If-Range": '"x"'})
    # If-Range does not match anything stored: the RFC allows 200 here;
    # without it strata must answer 206 from what it stored.
    req = origin.last("/rm")
    assert "Range" not in req.headers and "If-Range" not in req.headers
    assert r.status_code in (200, 206)
    r = s.get("/rm", headers={"Range": "bytes=10-19"})
    assert (r.status_code, r.content) == (206, BODY1000[10:20])
    r = s.get("/rm")
    assert (r.status_code, r.content) == (200, BODY1000)
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count("/rm") == 1


def test_range_miss_answered_206(origin, strata):
    origin.route("/rm2", headers=CC60, body=BODY1000)
    s = strata()
    r = s.get("/rm2", headers={"Range": "bytes=0-3"})
    assert (r.status_code, r.content) == (206, BODY1000[:4])
    assert r.headers["Content-Range"] == "bytes 0-3/1000"
    assert "Range" not in origin.last("/rm2").headers
    assert origin.count() == 1


def test_range_unsatisfiable_is_416(origin, strata):
    origin.route("/r416", headers=CC60, body=BODY1000)
    s = strata()
    s.get("/r416")
    r = s.get("/r416", headers={"Range": "bytes=5000-"})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == "bytes */1000"
    assert origin.count() == 1


def test_multiple_ranges_get_the_whole_object(origin, strata):
    origin.route("/rmulti", headers=CC60, body=BODY1000)
    s = strata()
    s.get("/rmulti")
    r = s.get("/rmulti", headers={"Range": "bytes=0-1,5-6"})
    assert (r.status_code, r.content) == (200, BODY1000)
    assert origin.count() == 1


def test_cache_status_member_present_on_plain_pass_through(origin, strata):
    origin.route("/plain", body=b"plain")  # no freshness: not stored
    s = strata()
    r = s.get("/plain")
    assert r.content == b"plain"
    assert cache_status(r).startswith("strata; ")
