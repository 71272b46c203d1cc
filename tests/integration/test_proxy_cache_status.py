"""strata serve: the Cache-Status table of DESIGN.md, row by row, and
Cache-Status on every response (appended after the origin's members)."""
import pytest

from proxyutil import (assert_cs, cache_status, cache_status_members, cs_params, numbered,
                       strata_members, wait_waiters)

CC60 = {"Cache-Control": "max-age=60"}


def test_row_fresh_hit(origin, strata):
    origin.route("/r", headers=CC60, body=b"x")
    s = strata()
    s.get("/r")
    s.advance(7_000)
    assert_cs(s.get("/r"), "strata; hit; ttl=53")


def test_row_stale_served_swr(origin, strata):
    origin.route("/r", headers={"Cache-Control": "max-age=60, stale-while-revalidate=60"},
                 body=b"x")
    s = strata()
    s.get("/r")
    s.advance(70_000)
    assert_cs(s.get("/r"), "strata; hit; ttl=-10; detail=swr")


def test_row_stale_served_sie(origin, strata):
    origin.route("/r", headers={"Cache-Control": "max-age=60, stale-if-error=60"}, body=b"x")
    s = strata()
    s.get("/r")
    s.advance(70_000)
    origin.route("/r", status=500)
    assert_cs(s.get("/r"), "strata; hit; ttl=-10; detail=sie")


def test_row_miss_stored(origin, strata):
    origin.route("/r", headers=CC60, body=b"x")
    s = strata()
    assert_cs(s.get("/r"), "strata; fwd=uri-miss; fwd-status=200; stored")


def test_row_miss_stored_new_variant(origin, strata):
    origin.route("/r", headers={**CC60, "Vary": "Accept-Language"}, body=b"x")
    s = strata()
    assert_cs(s.get("/r", headers={"Accept-Language": "en"}),
              "strata; fwd=uri-miss; fwd-status=200; stored")
    assert_cs(s.get("/r", headers={"Accept-Language": "de"}),
              "strata; fwd=vary-miss; fwd-status=200; stored")


@pytest.mark.parametrize("reason,headers,req_headers,cfg", [
    ("private", {"Cache-Control": "private, max-age=60"}, {}, {}),
    ("no-store", {"Cache-Control": "no-store"}, {}, {}),
    ("set-cookie", [("Cache-Control", "max-age=60"), ("Set-Cookie", "a=b")], {}, {}),
    ("too-big", {"Cache-Control": "max-age=60"}, {}, {"max_object_size": "1KB"}),
    ("auth", {"Cache-Control": "max-age=60"}, {"Authorization": "Basic dTpw"}, {}),
    ("no-freshness", {}, {}, {}),
])
def test_row_miss_not_stored(origin, strata, reason, headers, req_headers, cfg):
    origin.route("/r", headers=headers, body=b"y" * 2048)
    s = strata(http_cache=cfg)
    r = s.get("/r", headers=req_headers)
    assert r.status_code == 200 and r.content == b"y" * 2048
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=200; detail=%s" % reason)


def test_row_miss_not_stored_status(origin, strata):
    origin.route("/r", status=206, headers={"Cache-Control": "max-age=60",
                                            "Content-Range": "bytes 0-0/5"}, body=b"a")
    s = strata()
    assert_cs(s.get("/r"), "strata; fwd=uri-miss; fwd-status=206; detail=status")


def test_row_revalidated(origin, strata):
    def h(req):
        if req.headers.get("If-None-Match") == '"1"':
            return 304, {"ETag": '"1"'}, b""
        return 200, {"Cache-Control": "max-age=60", "ETag": '"1"'}, b"x"
    origin.route("/r", handler=h)
    s = strata()
    s.get("/r")
    s.advance(61_000)
    assert_cs(s.get("/r"), "strata; fwd=stale; fwd-status=304")


def test_row_route_cache_false(origin, strata):
    origin.route("/admin/r", headers={"Cache-Control": "public, max-age=60"}, body=b"x")
    s = strata(routes=[{"path": "/admin/*", "cache": False}])
    for _ in range(2):
        assert_cs(s.get("/admin/r"), "strata; fwd=bypass")
    assert origin.count() == 2


def test_row_hit_for_miss(origin, strata):
    origin.route("/r", headers={"Cache-Control": "private"}, body=b"x")
    s = strata()
    s.get("/r")
    assert_cs(s.get("/r"), "strata; fwd=bypass")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_row_non_cacheable_method(origin, strata, method):
    origin.route("/r", method=method, headers=CC60, body=b"x")
    s = strata()
    assert_cs(s.request(method, "/r"), "strata; fwd=method")


@pytest.mark.parametrize("cc", ["no-cache", "max-age=0"])
def test_row_request_no_cache(origin, strata, cc):
    origin.route("/r", handler=numbered(headers=CC60))
    s = strata()
    s.get("/r")
    r = s.get("/r", headers={"Cache-Control": cc})
    assert r.content == b"v2"
    assert_cs(r, "strata; fwd=request; fwd-status=200; stored")
    r = s.get("/r")  # the new response replaced the stored one
    assert r.content == b"v2"
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count() == 2


def test_row_collapsed(origin, strata):
    gate = origin.gate("/r")
    origin.route("/r", headers=CC60, body=b"x", gate=gate)
    s = strata()
    c1 = s.conn(timeout=20)
    c1.request("GET", "/r", host=s.host)
    gate.wait_waiting(1)
    c2 = s.conn(timeout=20)
    c2.request("GET", "/r", host=s.host)
    wait_waiters(s, 1)
    gate.release()
    r1, r2 = c1.read_response(), c2.read_response()
    c1.close()
    c2.close()
    assert_cs(r1, "strata; fwd=uri-miss; fwd-status=200; stored")
    m = cache_status(r2)
    assert "collapsed" in cs_params(m), m
    # "adds collapsed" to the row it would otherwise have
    rest = "; ".join(p.strip() for p in m.split(";") if p.strip() != "collapsed")
    assert rest in ("strata; fwd=uri-miss; fwd-status=200; stored",
                    "strata; fwd=uri-miss; fwd-status=200", "strata; hit; ttl=60",
                    "strata; hit; ttl=59"), m
    assert origin.count() == 1


# ---- placement and presence --------------------------------------------------------------

def test_appended_after_the_origins_members(origin, strata):
    origin.route("/o", headers={**CC60, "Cache-Status": "app-cache; hit"}, body=b"x")
    s = strata()
    for expect in ("strata; fwd=uri-miss; fwd-status=200; stored", "strata; hit; ttl=60"):
        r = s.get("/o")
        members = cache_status_members(r)
        assert members[0] == "app-cache; hit", members
        assert members[-1].startswith("strata"), members
        assert len(strata_members(r)) == 1, members  # the stored copy has no old member
        assert_cs(r, expect)


@pytest.mark.parametrize("path,status,headers", [
    ("/a404", 404, {}),
    ("/a500", 500, {}),
    ("/a301", 301, {"Location": "/x"}),
    ("/a204", 204, {}),
])
def test_on_every_response(origin, strata, path, status, headers):
    origin.route(path, status=status, headers=headers, body=b"" if status == 204 else b"b")
    s = strata()
    r = s.get(path)
    assert r.status_code == status
    assert cache_status(r).startswith("strata; ")


def test_on_304_206_416_and_head(origin, strata):
    origin.route("/p", headers={**CC60, "ETag": '"e"'}, body=b"0123456789")
    s = strata()
    s.get("/p")
    for r in (s.get("/p", headers={"If-None-Match": '"e"'}),
              s.get("/p", headers={"Range": "bytes=0-1"}),
              s.get("/p", headers={"Range": "bytes=50-"}),
              s.head("/p")):
        assert r.status_code in (304, 206, 416, 200)
        assert_cs(r, "strata; hit; ttl=60")


def test_on_origin_down(origin, strata):
    s = strata()
    origin.stop()
    r = s.get("/down")
    assert r.status_code in (502, 503, 504)
    assert cache_status(r).startswith("strata; ")
