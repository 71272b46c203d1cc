"""strata serve: Vary (origin), route vary_headers / vary_cookies, variants."""
from proxyutil import assert_cs, cache_status, cs_params

STORED = "strata; fwd=uri-miss; fwd-status=200; stored"
VARY_STORED = "strata; fwd=vary-miss; fwd-status=200; stored"


def by_header(name, extra=None, cc="max-age=60"):
    """Origin handler: the body names the request header's value."""
    def h(req):
        hs = {"Cache-Control": cc}
        hs.update(extra or {})
        return 200, hs, ("%s=%s" % (name, req.headers.get(name))).encode()
    return h


def test_vary_accept_language_variants(origin, strata):
    origin.route("/v", handler=by_header("Accept-Language", {"Vary": "Accept-Language"}))
    s = strata()
    r = s.get("/v", headers={"Accept-Language": "en"})
    assert r.content == b"Accept-Language=en"
    assert_cs(r, STORED)
    r = s.get("/v", headers={"Accept-Language": "fr"})
    assert r.content == b"Accept-Language=fr"
    assert_cs(r, VARY_STORED)
    assert origin.last("/v").headers.get("Accept-Language") == "fr"
    for lang in ("en", "fr", "en"):
        r = s.get("/v", headers={"Accept-Language": lang})
        assert r.content == ("Accept-Language=%s" % lang).encode()
        assert r.headers["Vary"] == "Accept-Language"
        assert_cs(r, "strata; hit; ttl=60")
    assert origin.count() == 2
    r = s.get("/v")  # no Accept-Language: a variant of its own
    assert r.content == b"Accept-Language=None"
    assert_cs(r, VARY_STORED)
    assert origin.count() == 3


def test_vary_on_two_headers(origin, strata):
    def h(req):
        return 200, {"Cache-Control": "max-age=60", "Vary": "Accept-Language, X-Tenant"}, \
            ("%s/%s" % (req.headers.get("Accept-Language"), req.headers.get("X-Tenant"))).encode()
    origin.route("/v2", handler=h)
    s = strata()
    combos = [("en", "a"), ("en", "b"), ("fr", "a")]
    for lang, t in combos:
        s.get("/v2", headers={"Accept-Language": lang, "X-Tenant": t})
    for lang, t in combos:
        r = s.get("/v2", headers={"Accept-Language": lang, "X-Tenant": t})
        assert r.content == ("%s/%s" % (lang, t)).encode()
        assert_cs(r, "strata; hit; ttl=60")
    assert origin.count() == 3


def test_vary_accept_encoding_is_normalised(origin, strata):
    origin.route("/ae", handler=by_header("Accept-Encoding", {"Vary": "Accept-Encoding"}))
    s = strata()
    r = s.get("/ae", headers={"Accept-Encoding": "gzip, deflate"})
    assert_cs(r, STORED)
    r = s.get("/ae", headers={"Accept-Encoding": "deflate,gzip"})
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count() == 1


def test_vary_star_is_never_stored(origin, strata):
    origin.route("/star", handler=by_header("X-N", {"Vary": "*"}, cc="public, max-age=60"))
    s = strata()
    r = s.get("/star", headers={"X-N": "1"})
    assert r.content == b"X-N=1"
    assert "stored" not in cs_params(cache_status(r))
    r = s.get("/star", headers={"X-N": "1"})
    assert r.content == b"X-N=1"
    assert "hit" not in cs_params(cache_status(r))
    assert origin.count() == 2


def test_route_vary_headers(origin, strata):
    origin.route("/api/products", handler=lambda req: (
        200, {}, ("tenant=%s" % req.headers.get("X-Tenant")).encode()))
    s = strata(routes=[{"path": "/api/products*", "ttl": "10m", "vary_headers": ["X-Tenant"]}])
    r = s.get("/api/products", headers={"X-Tenant": "a"})
    assert r.content == b"tenant=a"
    assert_cs(r, STORED)
    r = s.get("/api/products", headers={"X-Tenant": "b"})
    assert r.content == b"tenant=b"
    assert_cs(r, VARY_STORED)
    for t in ("a", "b"):
        r = s.get("/api/products", headers={"X-Tenant": t})
        assert r.content == ("tenant=%s" % t).encode()
        assert_cs(r, "strata; hit; ttl=600")
    assert origin.count() == 2


def test_route_vary_cookies(origin, strata):
    def h(req):
        return 200, {"Cache-Control": "max-age=60"}, (req.headers.get("Cookie") or "").encode()
    origin.route("/lang", handler=h)
    s = strata(routes=[{"path": "/lang", "vary_cookies": ["lang"]}])
    r = s.get("/lang", headers={"Cookie": "lang=en; other=1"})
    assert r.content == b"lang=en; other=1"
    r = s.get("/lang", headers={"Cookie": "lang=fr; other=1"})
    assert r.content == b"lang=fr; other=1"
    assert_cs(r, VARY_STORED)
    r = s.get("/lang", headers={"Cookie": "lang=en; other=1"})
    assert r.content == b"lang=en; other=1"
    assert_cs(r, "strata; hit; ttl=60")
    r = s.get("/lang", headers={"Cookie": "lang=fr; other=1"})
    assert r.content == b"lang=fr; other=1"
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count() == 2


def test_more_variants_than_max_variants_never_mixes_them(origin, strata):
    origin.route("/many", handler=by_header("Accept-Language", {"Vary": "Accept-Language"}))
    s = strata(http_cache={"max_variants": 2})
    langs = ["en", "fr", "de", "it", "en", "de", "fr", "it"]
    for lang in langs:
        r = s.get("/many", headers={"Accept-Language": lang})
        assert (r.status_code, r.content) == (200, ("Accept-Language=%s" % lang).encode())
    assert 4 <= origin.count() <= len(langs)
