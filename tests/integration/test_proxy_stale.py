"""strata serve: stale-while-revalidate (one background refresh) and
stale-if-error (connect errors, timeouts, 5xx), from the origin's
Cache-Control (RFC 5861) and from route settings."""
import time

import pytest

from proxyutil import assert_cs, cache_status, cs_params, numbered, wait_until


def test_swr_serves_stale_and_refreshes_once_in_background(origin, strata):
    h = numbered(headers={"Cache-Control": "max-age=10, stale-while-revalidate=60"})
    origin.route("/swr", handler=h)
    s = strata()
    assert s.get("/swr").content == b"v1"
    s.advance(15_000)
    gate = origin.gate("/swr")  # hold the background refresh
    r = s.get("/swr")
    assert (r.status_code, r.content) == (200, b"v1")
    assert_cs(r, "strata; hit; ttl=-5; detail=swr")
    gate.wait_waiting(1)
    for _ in range(3):  # while the refresh is in flight: stale, no other fetch
        r = s.get("/swr")
        assert r.content == b"v1"
        assert_cs(r, "strata; hit; ttl=-5; detail=swr")
    assert origin.count("/swr") == 2
    gate.release()

    def refreshed():
        r = s.get("/swr")
        return r if r.content == b"v2" else None

    r = wait_until(refreshed, 10, msg="the background refresh to be stored")
    assert_cs(r, "strata; hit; ttl=10")
    assert origin.count("/swr") == 2


def test_swr_background_refresh_without_gate(origin, strata):
    origin.route("/swr2", handler=numbered(
        headers={"Cache-Control": "max-age=10, stale-while-revalidate=60"}))
    s = strata()
    s.get("/swr2")
    s.advance(11_000)
    r = s.get("/swr2")
    assert r.content == b"v1"
    assert_cs(r, "strata; hit; ttl=-1; detail=swr")
    assert origin.wait_count(2, "/swr2") == 2
    wait_until(lambda: s.get("/swr2").content == b"v2", 10, msg="refreshed object")
    assert origin.count("/swr2") == 2


def test_swr_refresh_uses_validators(origin, strata):
    def h(req):
        if req.headers.get("If-None-Match") == '"e1"':
            return 304, {"ETag": '"e1"'}, b""
        return 200, {"Cache-Control": "max-age=10, stale-while-revalidate=60",
                     "ETag": '"e1"'}, b"body"
    origin.route("/swrv", handler=h)
    s = strata()
    s.get("/swrv")
    s.advance(12_000)
    assert_cs(s.get("/swrv"), "strata; hit; ttl=-2; detail=swr")
    assert origin.wait_count(2, "/swrv") == 2
    assert origin.last("/swrv").headers.get("If-None-Match") == '"e1"'

    def fresh():
        r = s.get("/swrv")
        return "detail" not in cs_params(cache_status(r)) and r
    r = wait_until(fresh, 10, msg="freshened by the 304")
    assert r.content == b"body"
    assert_cs(r, "strata; hit; ttl=10")


def test_swr_window_ends(origin, strata):
    origin.route("/swre", handler=numbered(
        headers={"Cache-Control": "max-age=10, stale-while-revalidate=30"}))
    s = strata()
    s.get("/swre")
    s.advance(45_000)  # 35 s stale > 30 s window: fetched before answering
    r = s.get("/swre")
    assert r.content == b"v2"
    assert "hit" not in cs_params(cache_status(r))
    assert origin.count() == 2


def test_route_stale_while_revalidate(origin, strata):
    origin.route("/api/list", handler=numbered(headers={"Cache-Control": "max-age=10"}))
    s = strata(routes=[{"path": "/api/*", "stale_while_revalidate": "1m"}])
    s.get("/api/list")
    s.advance(20_000)
    r = s.get("/api/list")
    assert r.content == b"v1"
    assert_cs(r, "strata; hit; ttl=-10; detail=swr")
    assert origin.wait_count(2, "/api/list") == 2


# ---- stale-if-error ----------------------------------------------------------------

SIE = {"Cache-Control": "max-age=10, stale-if-error=60", "ETag": '"s1"'}


def _prime_then_stale(origin, strata, path, **kw):
    origin.route(path, headers=SIE, body=b"good body")
    s = strata(**kw)
    assert s.get(path).content == b"good body"
    s.advance(15_000)
    return s


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_sie_on_5xx(origin, strata, status):
    s = _prime_then_stale(origin, strata, "/sie")
    origin.route("/sie", status=status, body=b"origin error")
    r = s.get("/sie")
    assert (r.status_code, r.content) == (200, b"good body")
    assert_cs(r, "strata; hit; ttl=-5; detail=sie")
    assert origin.count("/sie") == 2


def test_sie_when_origin_is_down(origin, strata):
    s = _prime_then_stale(origin, strata, "/sied")
    origin.stop()
    r = s.get("/sied")
    assert (r.status_code, r.content) == (200, b"good body")
    assert_cs(r, "strata; hit; ttl=-5; detail=sie")


def test_sie_on_upstream_timeout(origin, strata):
    s = _prime_then_stale(origin, strata, "/siet", server={"upstream_timeout": "1s"})
    origin.route("/siet", hang=True)
    t0 = time.monotonic()
    r = s.get("/siet")
    assert (r.status_code, r.content) == (200, b"good body")
    assert_cs(r, "strata; hit; ttl=-5; detail=sie")
    assert time.monotonic() - t0 < 8


def test_sie_when_origin_drops_the_connection(origin, strata):
    s = _prime_then_stale(origin, strata, "/siea")
    origin.route("/siea", abort=True)
    r = s.get("/siea")
    assert (r.status_code, r.content) == (200, b"good body")
    assert_cs(r, "strata; hit; ttl=-5; detail=sie")


def test_sie_window_ends(origin, strata):
    s = _prime_then_stale(origin, strata, "/siew")
    s.advance(60_000)  # now 75 s old: 65 s stale > 60 s
    origin.route("/siew", status=500, body=b"origin error")
    r = s.get("/siew")
    assert (r.status_code, r.content) == (500, b"origin error")


def test_no_sie_without_the_directive(origin, strata):
    origin.route("/nosie", headers={"Cache-Control": "max-age=10", "ETag": '"x"'}, body=b"ok")
    s = strata()
    s.get("/nosie")
    s.advance(15_000)
    origin.route("/nosie", status=500, body=b"origin error")
    r = s.get("/nosie")
    assert (r.status_code, r.content) == (500, b"origin error")


def test_route_stale_if_error(origin, strata):
    origin.route("/api/x", headers={"Cache-Control": "max-age=10"}, body=b"good")
    s = strata(routes=[{"path": "/api/*", "stale_if_error": "1m"}])
    s.get("/api/x")
    s.advance(20_000)
    origin.route("/api/x", status=502, body=b"bad gateway")
    r = s.get("/api/x")
    assert (r.status_code, r.content) == (200, b"good")
    assert_cs(r, "strata; hit; ttl=-10; detail=sie")


def test_sie_not_used_for_fresh_errors_on_4xx(origin, strata):
    s = _prime_then_stale(origin, strata, "/sie4")
    origin.route("/sie4", status=404, body=b"gone")
    r = s.get("/sie4")
    assert (r.status_code, r.content) == (404, b"gone")
