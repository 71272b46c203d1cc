"""strata serve: PURGE, unsafe methods invalidating their URL and
Location / Content-Location, tags from response headers (stripped before the
client), route tags, Cache-Group-Invalidation, admin invalidation of HTTP
objects (tags, urls, url_patterns)."""
import pytest

from proxyutil import assert_cs, cache_status, cs_params, numbered, purge_token_headers

CC60 = {"Cache-Control": "max-age=60"}
STORED = "strata; fwd=uri-miss; fwd-status=200; stored"
HIT60 = "strata; hit; ttl=60"


def _hit(r):
    return "hit" in cs_params(cache_status(r))


def _primed(s, path, **kw):
    s.get(path, **kw)
    r = s.get(path, **kw)
    assert _hit(r), "%s not stored: %s" % (path, r.headers.get("Cache-Status"))
    return r


def _json_count(r):
    body = r.json()
    assert isinstance(body, dict), body
    counts = [v for v in body.values() if isinstance(v, int) and not isinstance(v, bool)]
    assert counts, "no count in %r" % body
    return counts[0]


# ---- PURGE ----------------------------------------------------------------------

def test_purge_from_localhost(origin, strata):
    origin.route("/pg", handler=numbered(headers=CC60))
    s = strata()
    assert _primed(s, "/pg").content == b"v1"
    r = s.purge("/pg")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert _json_count(r) >= 1
    assert origin.count(method="PURGE") == 0  # never forwarded
    r = s.get("/pg")
    assert r.content == b"v2"
    assert_cs(r, STORED)
    assert origin.count("/pg") == 2


def test_purge_of_unknown_url_is_200_zero(origin, strata):
    s = strata()
    r = s.purge("/never-stored")
    assert r.status_code == 200 and _json_count(r) == 0
    assert origin.count() == 0


def test_purge_from_disallowed_address_is_403(origin, strata):
    origin.route("/pf", handler=numbered(headers=CC60))
    s = strata(http_cache={"purge": {"allow": ["10.0.0.0/8"]}})
    _primed(s, "/pf")
    r = s.purge("/pf")
    assert r.status_code == 403
    assert origin.count(method="PURGE") == 0
    r = s.get("/pf")
    assert r.content == b"v1"
    assert_cs(r, HIT60)


def test_purge_with_token_from_disallowed_address(origin, strata):
    origin.route("/pt", handler=numbered(headers=CC60))
    s = strata(http_cache={"purge": {"allow": ["10.0.0.0/8"], "token": "purge-secret"}})
    _primed(s, "/pt")
    assert s.purge("/pt", headers=purge_token_headers("wrong")).status_code == 403
    assert _hit(s.get("/pt"))
    r = s.purge("/pt", headers=purge_token_headers("purge-secret"))
    assert r.status_code == 200 and _json_count(r) >= 1
    r = s.get("/pt")
    assert r.content == b"v2"
    assert origin.count(method="PURGE") == 0


def test_purge_removes_every_variant_and_per_user_copy(origin, strata):
    def h(req):
        return 200, {"Cache-Control": "max-age=60", "Vary": "Accept-Language"}, \
            ("%s" % req.headers.get("Accept-Language")).encode()
    origin.route("/api/me", handler=lambda req: (
        200, {"Cache-Control": "private, max-age=60"},
        req.headers.get("Authorization", "").encode()))
    origin.route("/vv", handler=h)
    s = strata(routes=[{"path": "/api/me*", "per_user": True,
                        "user_from": "header:Authorization"}])
    for lang in ("en", "fr"):
        _primed(s, "/vv", headers={"Accept-Language": lang})
    for u in ("a", "b"):
        _primed(s, "/api/me", headers={"Authorization": u})
    assert s.purge("/vv").status_code == 200
    assert s.purge("/api/me").status_code == 200
    for lang in ("en", "fr"):
        r = s.get("/vv", headers={"Accept-Language": lang})
        assert r.content == lang.encode() and not _hit(r)
    for u in ("a", "b"):
        r = s.get("/api/me", headers={"Authorization": u})
        assert r.content == u.encode() and not _hit(r)
    assert origin.count("/vv") == 4 and origin.count("/api/me") == 4


def test_purge_keeps_other_urls(origin, strata):
    origin.route("/keep1", handler=numbered(headers=CC60))
    origin.route("/keep1?x=1", handler=numbered(headers=CC60))
    s = strata()
    _primed(s, "/keep1")
    _primed(s, "/keep1?x=1")
    s.purge("/keep1")
    assert not _hit(s.get("/keep1"))
    assert _hit(s.get("/keep1?x=1"))


# ---- unsafe methods -------------------------------------------------------------------

@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_unsafe_method_invalidates_its_url(origin, strata, method):
    origin.route("/items", handler=numbered(headers=CC60))
    origin.route("/items", method=method, status=200, body=b"done")
    s = strata()
    _primed(s, "/items")
    r = s.request(method, "/items", data=b"x" if method != "DELETE" else None)
    assert (r.status_code, r.content) == (200, b"done")
    assert_cs(r, "strata; fwd=method")
    r = s.get("/items")
    assert r.content == b"v2"
    assert_cs(r, STORED)
    assert origin.count("/items", "GET") == 2 and origin.count("/items", method) == 1


@pytest.mark.parametrize("status", [201, 204, 302])
def test_unsafe_method_invalidates_after_2xx_3xx(origin, strata, status):
    origin.route("/it", handler=numbered(headers=CC60))
    origin.route("/it", method="POST", status=status, body=b"")
    s = strata()
    _primed(s, "/it")
    assert s.post("/it", data=b"x").status_code == status
    assert s.get("/it").content == b"v2"


@pytest.mark.parametrize("status", [400, 404, 500])
def test_unsafe_method_error_does_not_invalidate(origin, strata, status):
    origin.route("/ie", handler=numbered(headers=CC60))
    origin.route("/ie", method="POST", status=status, body=b"no")
    s = strata()
    _primed(s, "/ie")
    assert s.post("/ie", data=b"x").status_code == status
    r = s.get("/ie")
    assert r.content == b"v1"
    assert_cs(r, HIT60)


@pytest.mark.parametrize("header", ["Location", "Content-Location"])
def test_unsafe_method_invalidates_location_on_same_host(origin, strata, header):
    origin.route("/items/5", handler=numbered("five", CC60))
    origin.route("/items/6", handler=numbered("six", CC60))
    origin.route("/items/7", handler=numbered("seven", CC60))
    s = strata()
    for p in ("/items/5", "/items/6", "/items/7"):
        _primed(s, p)
    origin.route("/items", method="POST", status=201, headers={header: "/items/5"})
    s.post("/items", data=b"x")
    origin.route("/items", method="POST", status=201,
                 headers={header: "http://%s/items/6" % s.host})
    s.post("/items", data=b"x")
    assert s.get("/items/5").content == b"five2"
    assert s.get("/items/6").content == b"six2"
    r = s.get("/items/7")
    assert r.content == b"seven1"
    assert_cs(r, HIT60)


def test_unsafe_method_does_not_invalidate_location_on_another_host(origin, strata):
    origin.route("/items/8", handler=numbered(headers=CC60))
    s = strata()
    s.raw("GET", "/items/8", host="other.example")
    assert _hit(s.raw("GET", "/items/8", host="other.example"))
    origin.route("/items", method="POST", status=201,
                 headers={"Location": "http://other.example/items/8"})
    s.post("/items", data=b"x")
    r = s.raw("GET", "/items/8", host="other.example")
    assert r.content == b"v1"
    assert_cs(r, HIT60)


def test_unsafe_method_invalidates_every_variant(origin, strata):
    def h(req):
        return 200, {"Cache-Control": "max-age=60", "Vary": "Accept-Language"}, \
            req.headers.get("Accept-Language", "").encode()
    origin.route("/uv", handler=h)
    origin.route("/uv", method="PUT", status=204)
    s = strata()
    for lang in ("en", "fr"):
        _primed(s, "/uv", headers={"Accept-Language": lang})
    s.request("PUT", "/uv", data=b"x")
    for lang in ("en", "fr"):
        assert not _hit(s.get("/uv", headers={"Accept-Language": lang}))
    assert origin.count("/uv", "GET") == 4


def test_cache_group_invalidation(origin, strata):
    origin.route("/g/a", handler=numbered("a", {**CC60, "Cache-Groups": '"grp1", "other"'}))
    origin.route("/g/b", handler=numbered("b", {**CC60, "Cache-Groups": '"grp2"'}))
    origin.route("/g/change", method="POST", status=200,
                 headers={"Cache-Group-Invalidation": '"grp1"'}, body=b"ok")
    s = strata()
    _primed(s, "/g/a")
    _primed(s, "/g/b")
    s.post("/g/change", data=b"x")
    assert s.get("/g/a").content == b"a2"
    r = s.get("/g/b")
    assert r.content == b"b1"
    assert_cs(r, HIT60)


# ---- tags ------------------------------------------------------------------------------

TAG_HEADERS = ["Surrogate-Key", "Cache-Tag", "xkey", "Cache-Groups"]


@pytest.mark.parametrize("header,value,tag", [
    ("Surrogate-Key", "product-1 list", "product-1"),
    ("Surrogate-Key", "product-1 list", "list"),
    ("xkey", "product-1 list", "list"),
    ("Cache-Tag", "product-1,list", "list"),
    ("Cache-Tag", "product-1, list", "product-1"),
    ("Cache-Groups", '"product-1", "list"', "list"),
])
def test_tags_from_response_headers(origin, strata, header, value, tag):
    origin.route("/t", handler=numbered(headers={**CC60, header: value}))
    origin.route("/u", handler=numbered("u", headers={**CC60, header: "unrelated"}))
    s = strata()
    r = s.get("/t")
    for h in TAG_HEADERS:
        assert h not in r.headers, "tag header %s reached the client" % h
    r = _primed(s, "/t")
    for h in TAG_HEADERS:
        assert h not in r.headers
    _primed(s, "/u")
    out = s.invalidate(tags=[tag])
    assert "removed" in out
    r = s.get("/t")
    assert r.content == b"v2" and not _hit(r)
    assert_cs(s.get("/u"), HIT60)


def test_tags_are_case_sensitive(origin, strata):
    origin.route("/tc", handler=numbered(headers={**CC60, "Surrogate-Key": "Product"}))
    s = strata()
    _primed(s, "/tc")
    s.invalidate(tags=["product"])
    assert _hit(s.get("/tc"))
    s.invalidate(tags=["Product"])
    assert not _hit(s.get("/tc"))


def test_strip_tag_headers_false_passes_them_on(origin, strata):
    origin.route("/ts", headers={**CC60, "Surrogate-Key": "a b", "Cache-Tag": "c"}, body=b"x")
    s = strata(http_cache={"strip_tag_headers": False})
    r = s.get("/ts")
    assert r.headers["Surrogate-Key"] == "a b" and r.headers["Cache-Tag"] == "c"
    r = s.get("/ts")
    assert_cs(r, HIT60)
    assert r.headers["Surrogate-Key"] == "a b" and r.headers["Cache-Tag"] == "c"


def test_configured_tag_headers(origin, strata):
    origin.route("/tcfg", handler=numbered(headers={**CC60, "X-Tags": "t1,t2",
                                                    "Surrogate-Key": "sk"}))
    s = strata(http_cache={"tag_headers": ["X-Tags"]})
    r = s.get("/tcfg")
    assert "X-Tags" not in r.headers
    assert r.headers.get("Surrogate-Key") == "sk"  # not a tag header any more
    _primed(s, "/tcfg")
    s.invalidate(tags=["t2"])
    assert not _hit(s.get("/tcfg"))


def test_route_tags_added_to_every_object(origin, strata):
    origin.route("/cat/1", handler=numbered("one", CC60))
    origin.route("/cat/2", handler=numbered("two", {**CC60, "Surrogate-Key": "own"}))
    origin.route("/other", handler=numbered("other", CC60))
    s = strata(routes=[{"path": "/cat/*", "tags": ["catalog"]}])
    for p in ("/cat/1", "/cat/2", "/other"):
        _primed(s, p)
    s.invalidate(tags=["catalog"])
    assert s.get("/cat/1").content == b"one2"
    assert s.get("/cat/2").content == b"two2"
    assert _hit(s.get("/other"))


def test_more_than_64_tags_not_stored(origin, strata):
    tags = " ".join("t%d" % i for i in range(65))
    origin.route("/many", handler=numbered(headers={**CC60, "Surrogate-Key": tags}))
    # exactly 64 tags from the header: stored (the implicit url: tag is
    # strata's own and does not count against the object's 64)
    origin.route("/max", handler=numbered(headers={**CC60, "Surrogate-Key": " ".join(
        "t%d" % i for i in range(64))}))
    s = strata()
    r = s.get("/many")
    assert r.content == b"v1" and "Surrogate-Key" not in r.headers
    assert "stored" not in cs_params(cache_status(r))
    assert s.get("/many").content == b"v2"
    assert_cs(s.get("/max"), STORED)
    assert _hit(s.get("/max"))


def test_admin_invalidate_urls_and_url_patterns(origin, strata):
    for p in ("/a/1", "/a/2?x=1", "/b/1"):
        origin.route(p, handler=numbered(headers=CC60))
    s = strata()
    for p in ("/a/1", "/a/2?x=1", "/b/1"):
        _primed(s, p)
    s.invalidate(urls=["/a/1"])
    assert not _hit(s.get("/a/1"))
    assert _hit(s.get("/a/2?x=1"))
    s.invalidate(url_patterns=["/a/*"])
    assert not _hit(s.get("/a/2?x=1"))
    assert _hit(s.get("/b/1"))


def test_purge_during_the_fetch_wins(origin, strata):
    """A PURGE that arrives while the object is being fetched: the fetched
    response (which may predate the change the purge announces) is served to
    the request that asked for it but not stored."""
    gate = origin.gate("/race")
    origin.route("/race", handler=numbered(headers=CC60), gate=gate)
    s = strata()
    c = s.conn()
    c.request("GET", "/race", host=s.host)
    gate.wait_waiting(1)
    r = s.purge("/race")
    assert r.status_code == 200
    gate.release()
    r1 = c.read_response()
    c.close()
    assert r1.content == b"v1"
    r2 = s.get("/race")
    assert r2.content == b"v2" and "hit" not in cache_status(r2)
    assert_cs(s.get("/race"), HIT60)
    assert origin.count("/race") == 2
