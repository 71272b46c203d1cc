"""Request Cache-Control directives and the variant bound (docs/http-cache.md)."""
from proxyutil import assert_cs, cache_status, numbered

CC60 = {"Cache-Control": "max-age=60"}


def test_only_if_cached_miss_is_504_and_never_reaches_the_origin(origin, strata):
    origin.route("/oic", handler=numbered(headers=CC60))
    s = strata()
    r = s.get("/oic", headers={"Cache-Control": "only-if-cached"})
    assert r.status_code == 504
    assert cache_status(r) == "strata; detail=only-if-cached"
    assert origin.count() == 0


def test_only_if_cached_hit_is_served(origin, strata):
    origin.route("/oic", handler=numbered(headers=CC60))
    s = strata()
    assert s.get("/oic").content == b"v1"
    r = s.get("/oic", headers={"Cache-Control": "only-if-cached"})
    assert (r.status_code, r.content) == (200, b"v1")
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count() == 1


def test_only_if_cached_stale_is_504(origin, strata):
    origin.route("/oic", handler=numbered(headers=CC60))
    s = strata()
    s.get("/oic")
    s.advance(61000)
    r = s.get("/oic", headers={"Cache-Control": "only-if-cached"})
    assert r.status_code == 504
    assert origin.count() == 1


def test_pragma_no_cache_without_cache_control_refetches(origin, strata):
    origin.route("/pr", handler=numbered(headers=CC60))
    s = strata()
    s.get("/pr")
    r = s.get("/pr", headers={"Pragma": "no-cache"})
    assert r.content == b"v2"
    assert_cs(r, "strata; fwd=request; fwd-status=200; stored")
    # Cache-Control wins over Pragma
    r = s.get("/pr", headers={"Pragma": "no-cache", "Cache-Control": "max-age=60"})
    assert r.content == b"v2"
    assert_cs(r, "strata; hit; ttl=60")


def _lang(req):
    lang = req.headers.get("Accept-Language", "")
    return 200, {"Cache-Control": "max-age=60", "Vary": "Accept-Language"}, lang.encode()


def test_max_variants_bounds_the_variants_of_a_url(origin, strata):
    origin.route("/mv", handler=_lang)
    s = strata(http_cache={"max_variants": 2})
    for lang in ("en", "fr"):
        r = s.get("/mv", headers={"Accept-Language": lang})
        assert "stored" in cache_status(r)
    r = s.get("/mv", headers={"Accept-Language": "de"})
    assert r.content == b"de"
    assert_cs(r, "strata; fwd=vary-miss; fwd-status=200; detail=variants")
    r = s.get("/mv", headers={"Accept-Language": "de"})
    assert r.content == b"de" and "hit" not in cache_status(r)
    for lang in ("en", "fr"):
        r = s.get("/mv", headers={"Accept-Language": lang})
        assert r.content == lang.encode()
        assert_cs(r, "strata; hit; ttl=60")
    assert origin.count() == 4


def test_head_passed_through_keeps_the_origins_content_length(origin, strata):
    origin.route("/nc/x", body=b"0123456789")
    s = strata(routes=[{"path": "/nc/*", "cache": False}])
    r = s.head("/nc/x")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["Content-Length"] == "10"
    assert cache_status(r) == "strata; fwd=bypass"
    assert [q.method for q in origin.requests] == ["HEAD"]
