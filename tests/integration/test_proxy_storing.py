"""strata serve: what is stored (DESIGN "Storing"): no-store, private,
Set-Cookie, Authorization, sizes, statuses, route ttl only for silent
responses, http_cache.default_ttl."""
import pytest

from proxyutil import assert_cs, cache_status, cs_params, numbered

STORED = "strata; fwd=uri-miss; fwd-status=200; stored"


def _not_stored_twice(s, origin, path, expected_detail, headers=None, fwd_status=200):
    """First request: miss not stored with the detail; second reaches the
    origin again and is not a hit."""
    r1 = s.get(path, headers=headers or {})
    assert r1.status_code == fwd_status
    assert_cs(r1, "strata; fwd=uri-miss; fwd-status=%d; detail=%s" % (fwd_status,
                                                                        expected_detail))
    r2 = s.get(path, headers=headers or {})
    assert r2.status_code == fwd_status
    assert "hit" not in cs_params(cache_status(r2))
    assert origin.count(path) == 2
    return r1, r2


def test_no_store_not_stored(origin, strata):
    origin.route("/ns", handler=numbered(headers={"Cache-Control": "no-store, max-age=60"}))
    s = strata()
    r1, r2 = _not_stored_twice(s, origin, "/ns", "no-store")
    assert (r1.content, r2.content) == (b"v1", b"v2")


def test_private_not_stored(origin, strata):
    origin.route("/pv", handler=numbered(headers={"Cache-Control": "private, max-age=60"}))
    s = strata()
    r1, r2 = _not_stored_twice(s, origin, "/pv", "private")
    assert (r1.content, r2.content) == (b"v1", b"v2")
    assert r1.headers["Cache-Control"] == "private, max-age=60"


def test_set_cookie_not_stored(origin, strata):
    origin.route("/sc", handler=numbered(headers=[
        ("Cache-Control", "public, max-age=60"), ("Set-Cookie", "a=1; Path=/"),
        ("Set-Cookie", "b=2; Path=/")]))
    s = strata()
    r1, r2 = _not_stored_twice(s, origin, "/sc", "set-cookie")
    assert (r1.content, r2.content) == (b"v1", b"v2")
    assert r1.cookies.get("a") == "1" and r1.cookies.get("b") == "2"


def test_too_big_not_stored_but_served_whole(origin, strata):
    body = b"0123456789abcdef" * 256  # 4 KiB
    origin.route("/big", headers={"Cache-Control": "max-age=60"}, body=body)
    s = strata(http_cache={"max_object_size": "1KB"})
    r1, r2 = _not_stored_twice(s, origin, "/big", "too-big")
    assert r1.content == body and r2.content == body


def test_object_at_max_object_size_is_stored(origin, strata):
    body = b"x" * 1000
    origin.route("/fits", headers={"Cache-Control": "max-age=60"}, body=body)
    s = strata(http_cache={"max_object_size": "1KB"})
    assert_cs(s.get("/fits"), STORED)
    r = s.get("/fits")
    assert r.content == body
    assert_cs(r, "strata; hit; ttl=60")


def test_authorization_response_not_shared_by_default(origin, strata):
    origin.route("/auth", handler=numbered(headers={"Cache-Control": "max-age=60"}))
    s = strata()
    r = s.get("/auth", headers={"Authorization": "Bearer alice"})
    assert (r.status_code, r.content) == (200, b"v1")
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=200; detail=auth")
    r = s.get("/auth")
    assert r.content == b"v2"
    r = s.get("/auth", headers={"Authorization": "Bearer bob"})
    assert r.content != b"v1"  # never alice's response
    assert origin.count("/auth") in (2, 3)


@pytest.mark.parametrize("cc,ttl", [("public, max-age=60", 60), ("s-maxage=60", 60),
                                    ("max-age=60, must-revalidate", 60)])
def test_authorization_response_shared_when_origin_allows(origin, strata, cc, ttl):
    origin.route("/authok", handler=numbered(headers={"Cache-Control": cc}))
    s = strata()
    r = s.get("/authok", headers={"Authorization": "Bearer alice"})
    assert r.content == b"v1"
    assert_cs(r, STORED)
    r = s.get("/authok", headers={"Authorization": "Bearer bob"})
    assert r.content == b"v1"
    assert_cs(r, "strata; hit; ttl=%d" % ttl)
    r = s.get("/authok")
    assert r.content == b"v1"
    assert origin.count("/authok") == 1


def test_206_from_origin_never_stored(origin, strata):
    origin.route("/o206", status=206, handler=numbered(status=206, headers={
        "Cache-Control": "max-age=60", "Content-Range": "bytes 0-1/10"}))
    s = strata()
    r1, r2 = _not_stored_twice(s, origin, "/o206", "status", fwd_status=206)
    assert r1.content == b"v1" and r2.content == b"v2"


def test_no_freshness_not_stored(origin, strata):
    origin.route("/silent", handler=numbered())
    s = strata()
    r1, r2 = _not_stored_twice(s, origin, "/silent", "no-freshness")
    assert (r1.content, r2.content) == (b"v1", b"v2")


def test_explicit_freshness_on_404_is_stored(origin, strata):
    origin.route("/gone", handler=numbered(status=404, headers={"Cache-Control": "max-age=60"}))
    s = strata()
    r = s.get("/gone")
    assert (r.status_code, r.content) == (404, b"v1")
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=404; stored")
    r = s.get("/gone")
    assert (r.status_code, r.content) == (404, b"v1")
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count() == 1


# ---- route ttl and default_ttl -------------------------------------------------------

def test_route_ttl_applies_when_origin_is_silent(origin, strata):
    origin.route("/api/config/", handler=numbered())
    s = strata(routes=[{"path": "/api/config/", "ttl": "1h"}])
    r = s.get("/api/config/")
    assert r.content == b"v1"
    assert_cs(r, STORED)
    r = s.get("/api/config/")
    assert r.content == b"v1"
    assert_cs(r, "strata; hit; ttl=3600")
    assert origin.count() == 1


def test_route_ttl_ignored_when_origin_gives_freshness(origin, strata):
    origin.route("/api/p1", handler=numbered(headers={"Cache-Control": "max-age=60"}))
    origin.route("/api/p2", handler=numbered(headers={"Cache-Control": "no-store"}))
    s = strata(routes=[{"path": "/api/*", "ttl": "10m"}])
    s.get("/api/p1")
    assert_cs(s.get("/api/p1"), "strata; hit; ttl=60")
    r = s.get("/api/p2")
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=200; detail=no-store")
    assert s.get("/api/p2").content == b"v2"
    assert origin.count("/api/p1") == 1 and origin.count("/api/p2") == 2


@pytest.mark.parametrize("status", [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501])
def test_route_ttl_on_heuristically_cacheable_status(origin, strata, status):
    origin.route("/st", handler=numbered(status=status))
    s = strata(routes=[{"path": "/st", "ttl": "10m"}])
    r1 = s.get("/st")
    assert r1.status_code == status
    assert_cs(r1, "strata; fwd=uri-miss; fwd-status=%d; stored" % status)
    r2 = s.get("/st")
    assert r2.status_code == status and r2.content == r1.content
    assert_cs(r2, "strata; hit; ttl=600")
    assert origin.count() == 1


@pytest.mark.parametrize("status", [201, 302, 307, 400, 403, 500, 502, 503])
def test_route_ttl_not_applied_to_other_statuses(origin, strata, status):
    origin.route("/st", handler=numbered(status=status))
    s = strata(routes=[{"path": "/st", "ttl": "10m"}])
    r1 = s.get("/st")
    assert r1.status_code == status
    assert not {"stored", "hit"} & set(cs_params(cache_status(r1)))
    r2 = s.get("/st")
    assert r2.status_code == status and r2.content == b"v2"
    assert origin.count() == 2


def test_route_ttl_not_applied_with_set_cookie(origin, strata):
    origin.route("/rc", handler=numbered(headers={"Set-Cookie": "s=1"}))
    s = strata(routes=[{"path": "/rc", "ttl": "10m"}])
    assert_cs(s.get("/rc"), "strata; fwd=uri-miss; fwd-status=200; detail=set-cookie")
    assert s.get("/rc").content == b"v2"
    assert origin.count() == 2


def test_route_ttl_not_applied_with_credentials(origin, strata):
    origin.route("/ra", handler=numbered())
    s = strata(routes=[{"path": "/ra", "ttl": "10m"}])
    r = s.get("/ra", headers={"Authorization": "Bearer alice"})
    assert r.content == b"v1" and not {"stored", "hit"} & set(cs_params(cache_status(r)))
    r = s.get("/ra", headers={"Authorization": "Bearer bob"})
    assert r.content == b"v2"
    assert origin.count() == 2


def test_default_ttl_applies_to_silent_responses_everywhere(origin, strata):
    origin.route("/d1", handler=numbered())
    origin.route("/d2", handler=numbered(headers={"Cache-Control": "max-age=5"}))
    s = strata(http_cache={"default_ttl": "30s"})
    s.get("/d1")
    r = s.get("/d1")
    assert r.content == b"v1"
    assert_cs(r, "strata; hit; ttl=30")
    s.get("/d2")
    assert_cs(s.get("/d2"), "strata; hit; ttl=5")
    assert origin.count() == 2


def test_route_ttl_beats_default_ttl(origin, strata):
    origin.route("/r/x", handler=numbered())
    s = strata(http_cache={"default_ttl": "30s"}, routes=[{"path": "/r/*", "ttl": "2m"}])
    s.get("/r/x")
    assert_cs(s.get("/r/x"), "strata; hit; ttl=120")


def test_first_matching_route_wins(origin, strata):
    origin.route("/api/products/1", handler=numbered())
    s = strata(routes=[{"path": "/api/products*", "ttl": "10m"},
                       {"path": "/api/*", "cache": False}])
    s.get("/api/products/1")
    assert_cs(s.get("/api/products/1"), "strata; hit; ttl=600")
    assert origin.count() == 1


def test_route_cache_control_is_written_to_the_client(origin, strata):
    origin.route("/static/app.js", headers={"Cache-Control": "max-age=60"}, body=b"js")
    origin.route("/other.js", headers={"Cache-Control": "max-age=60"}, body=b"other")
    cc = "public, max-age=2592000, immutable"
    s = strata(routes=[{"path": "/static/*", "ttl": "30d", "cache_control": cc}])
    r = s.get("/static/app.js")
    assert (r.content, r.headers["Cache-Control"]) == (b"js", cc)
    assert_cs(r, STORED)
    r = s.get("/static/app.js")
    assert (r.content, r.headers["Cache-Control"]) == (b"js", cc)
    assert cache_status(r).startswith("strata; hit; ttl=")
    assert "," not in r.headers["Cache-Control"].replace(cc, "")  # one header, not two
    # other routes keep the origin's header
    assert s.get("/other.js").headers["Cache-Control"] == "max-age=60"
    assert origin.count() == 2


def test_route_cache_control_on_a_silent_origin(origin, strata):
    origin.route("/static/logo.png", body=b"png")
    cc = "public, max-age=2592000, immutable"
    s = strata(routes=[{"path": "/static/*", "ttl": "30d", "cache_control": cc}])
    r = s.get("/static/logo.png")
    assert r.headers["Cache-Control"] == cc
    r = s.get("/static/logo.png")
    assert r.headers["Cache-Control"] == cc
    assert_cs(r, "strata; hit; ttl=2592000")
    assert origin.count() == 1


def test_heuristic_freshness_off_by_default(origin, strata):
    lm = "Mon, 01 Jan 2024 00:00:00 GMT"
    origin.route("/lm", handler=numbered(headers={"Last-Modified": lm}))
    s = strata()
    assert_cs(s.get("/lm"), "strata; fwd=uri-miss; fwd-status=200; detail=no-freshness")
    assert s.get("/lm").content == b"v2"


def test_heuristic_freshness_when_enabled(origin, strata):
    import time
    from proxyutil import http_date
    now = time.time()
    origin.route("/lm", handler=numbered(headers={"Last-Modified": http_date(now - 10 * 86400),
                                                  "Date": http_date(now)}))
    s = strata(http_cache={"heuristic": True})
    assert_cs(s.get("/lm"), STORED)
    r = s.get("/lm")
    assert r.content == b"v1"
    ttl = int(cs_params(cache_status(r))["ttl"])
    assert 0 < ttl <= 10 * 86400
    assert origin.count() == 1


def test_http_objects_in_a_named_cache(origin, strata):
    origin.route("/named", headers={"Cache-Control": "max-age=60"}, body=b"named")
    s = strata(caches={"web": {"backend": "memory", "max_memory": "16MB"}},
               http_cache={"cache": "web"})
    s.get("/named")
    r = s.get("/named")
    assert r.content == b"named"
    assert_cs(r, "strata; hit; ttl=60")
