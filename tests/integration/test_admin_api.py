"""The admin API (DESIGN "Admin API") on its own listener: authentication,
the Host check, content types, errors, request ids, and every endpoint:
health, stats, invalidate, the key-value API, explain, warm.

strata runs with STRATA_TEST_CLOCK=1 and the admin token "test-token"
(conftest.py); expiry is driven by moving strata's clock (s.advance), and
everything that depends on real processes is polled with a bound."""
import re
import threading
import time
import urllib.parse

import pytest

from proxyutil import ADMIN_TOKEN, RawConn, cache_status, cs_params, wait_until

CC60 = {"Cache-Control": "max-age=60"}
JSON_CT = {"Content-Type": "application/json"}
ROUTES = [
    {"name": "prod", "path": "/p/*", "ttl": "1h"},
    {"name": "off", "path": "/nc/*", "cache": False},
    {"name": "expl", "path": "/e/*"},
    {"name": "w", "path": "/w/*"},
]
CACHE_FIELDS = ("hits", "misses", "hit_rate", "sets", "deletes", "evictions", "expired",
                "invalidated", "errors", "items", "bytes", "max_bytes")
ROUTE_FIELDS = ("requests", "hit", "miss", "stale", "bypass", "pass", "revalidated",
                "upstream_seconds")


# ---- helpers ----------------------------------------------------------------------

def _hit(r):
    return "hit" in cs_params(cache_status(r))


def _fwd(r):
    return "fwd" in cs_params(cache_status(r))


def _primed(s, path, **kw):
    r = s.get(path, **kw)
    assert r.status_code == 200, (path, r.status_code, r.text[:200])
    r = s.get(path, **kw)
    assert _hit(r), "%s not stored: %s" % (path, r.headers.get("Cache-Status"))
    return r


def _err(r, status, mention=None):
    """Assert an admin error: `status`, JSON {"error": str, "detail": str}."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if mention is not None:
        assert mention in body["detail"] or mention in body["error"], \
            "expected %r in the error, got %r" % (mention, body)
    return body


def _admin_raw(s, method, target, headers=(), body=None, host=None, token=ADMIN_TOKEN):
    """One raw request to the admin listener (exact target, exact headers)."""
    hs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    if token is not None and not any(k.lower() == "authorization" for k, _ in hs):
        hs.append(("Authorization", "Bearer %s" % token))
    with RawConn(s.admin_port, timeout=15) as c:
        c.request(method, target, hs, body,
                  host="127.0.0.1:%d" % s.admin_port if host is None else host)
        return c.read_response(method)


def _key_url(cache, key, query=""):
    """/_strata/caches/{cache}/keys/{key}: `key` (str or bytes) fully
    percent-encoded (every '/', space, '%' and non-ASCII byte)."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    return "/_strata/caches/%s/keys/%s%s" % (
        urllib.parse.quote(cache, safe=""), urllib.parse.quote(key, safe=""),
        ("?" + query) if query else "")


def kv_put(s, key, value, query="", cache="default"):
    return s.admin_request("PUT", _key_url(cache, key, query), data=value)


def kv_get(s, key, cache="default"):
    return s.admin_request("GET", _key_url(cache, key))


def kv_delete(s, key, cache="default"):
    return s.admin_request("DELETE", _key_url(cache, key))


def stats(s):
    r = s.admin_get("/_strata/stats")
    assert r.status_code == 200, r.text
    return r.json()


def wait_stats(s, pred, what):
    """Poll (bounded) GET /_strata/stats until pred(stats) holds; returns it.
    A request is counted when it ends, which may be just after its response
    reached the client."""
    box = {}

    def ok():
        box["st"] = stats(s)
        return pred(box["st"])
    wait_until(ok, 10, msg=what)
    return box["st"]


def explain(s, url):
    r = s.admin_get("/_strata/explain?url=" + urllib.parse.quote(url, safe=""))
    assert r.status_code == 200, (url, r.status_code, r.text)
    return r.json()


def warm(s, body, timeout=30):
    return s.admin_post("/_strata/warm", json=body, timeout=timeout)


# ---- authentication, Host, content types, routing -------------------------------------

def test_missing_token_is_401_json(origin, strata):
    s = strata()
    for path in ("/_strata/health", "/_strata/stats", "/_strata/explain?url=/x",
                 "/_strata/caches/default/keys/k"):
        r = s.admin_get(path, token=None)
        _err(r, 401)
        assert r.headers.get("X-Request-Id")
    _err(s.admin_post("/_strata/invalidate", json={"all": True}, token=None), 401)


@pytest.mark.parametrize("auth", [
    "Bearer wrong-tokn",        # same length as test-token, other bytes
    "Bearer test-tokeN",        # one byte differs
    "Bearer test-toke",         # a prefix of the token
    "Bearer test-token1",       # the token plus one byte
    "Bearer test-tokentest-token",  # the token twice
    "Bearer ",
    "Bearer",
    "Basic test-token",         # wrong scheme
    "Token test-token",
    "test-token",               # no scheme at all
    "Basic dGVzdDp0ZXN0LXRva2Vu",
])
def test_wrong_token_or_scheme_is_401(origin, strata, auth):
    s = strata()
    r = s.admin_get("/_strata/stats", headers={"Authorization": auth})
    _err(r, 401)


def test_wrong_token_changes_nothing(origin, strata):
    s = strata()
    assert kv_put(s, "keep", b"v").status_code == 200
    r = s.admin_post("/_strata/invalidate", json={"all": True}, token="wrong-token")
    _err(r, 401)
    r = s.admin_request("DELETE", _key_url("default", "keep"), token="test-tokem")
    _err(r, 401)
    assert kv_get(s, "keep").content == b"v"


def test_right_token_is_accepted_and_scheme_is_case_insensitive(origin, strata):
    s = strata()
    assert s.admin_get("/_strata/health").status_code == 200
    r = s.admin_get("/_strata/health", headers={"Authorization": "bearer test-token"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{admin_port}",
                                  "127.0.0.1.evil.example:{admin_port}",
                                  "localhost.evil.example", "attacker.localhost"])
def test_foreign_host_is_403(origin, strata, host):
    """DNS rebinding: a page on evil.example that resolves to 127.0.0.1 sends
    Host: evil.example; strata refuses it even with the right token."""
    s = strata()
    h = host.format(admin_port=s.admin_port)
    r = _admin_raw(s, "GET", "/_strata/stats", host=h)
    _err(r, 403)
    assert r.headers.get("X-Request-Id")
    assert kv_put(s, "k", b"v").status_code == 200
    r = _admin_raw(s, "POST", "/_strata/invalidate", headers=JSON_CT,
                   body=b'{"all": true}', host=h)
    _err(r, 403)
    assert kv_get(s, "k").content == b"v"


@pytest.mark.parametrize("host", ["127.0.0.1:{admin_port}", "localhost:{admin_port}",
                                  "localhost", "LOCALHOST:{admin_port}"])
def test_listener_and_localhost_hosts_are_accepted(origin, strata, host):
    s = strata()
    r = _admin_raw(s, "GET", "/_strata/health", host=host.format(admin_port=s.admin_port))
    assert r.status_code == 200, (r.status_code, r.content)


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "application/jsonx", "application/json-seq"])
def test_post_without_json_content_type_is_415(origin, strata, ctype):
    s = strata()
    assert kv_put(s, "k", b"v").status_code == 200
    hs = {} if ctype is None else {"Content-Type": ctype}
    r = _admin_raw(s, "POST", "/_strata/invalidate", headers=hs, body=b'{"all": true}')
    _err(r, 415)
    assert r.headers.get("X-Request-Id")
    assert kv_get(s, "k").status_code == 200, "a refused POST was acted upon"


def test_post_with_json_content_type_and_charset_is_accepted(origin, strata):
    s = strata()
    r = _admin_raw(s, "POST", "/_strata/invalidate",
                   headers={"Content-Type": "application/json; charset=utf-8"},
                   body=b'{"keys": ["x"]}')
    assert r.status_code == 200, r.content
    assert r.json() == {"removed": 0, "exact": True}


@pytest.mark.parametrize("path", ["/", "/_strata", "/_strata/", "/_strata/nope",
                                  "/_strata/statsx", "/_strata/stats/extra",
                                  "/_strata/caches/default", "/metricsx"])
def test_unknown_endpoint_is_404_json(origin, strata, path):
    s = strata()
    r = s.admin_get(path)
    _err(r, 404)
    assert r.headers.get("X-Request-Id")


@pytest.mark.parametrize("method,path", [
    ("DELETE", "/_strata/stats"),
    ("POST", "/_strata/health"),
    ("GET", "/_strata/invalidate"),
    ("PUT", "/_strata/warm"),
    ("GET", "/_strata/warm"),
    ("POST", "/metrics"),
    ("POST", "/_strata/caches/default/keys/k"),
    ("PATCH", "/_strata/caches/default/keys/k"),
])
def test_wrong_method_is_405_with_allow(origin, strata, method, path):
    s = strata()
    r = s.admin_request(method, path, headers=JSON_CT, data=b"{}")
    _err(r, 405)
    assert r.headers.get("X-Request-Id")
    # RFC 9110 15.5.6: a 405 response MUST carry Allow with the methods the
    # resource supports.
    allow = r.headers.get("Allow")
    assert allow, "405 without an Allow header: %r" % dict(r.headers)
    assert method not in [m.strip() for m in allow.split(",")]


def test_head_of_health_has_no_body_and_keeps_the_connection_usable(origin, strata):
    """HEAD is answered like GET without a body: the next response on the
    same connection must not be read from leftover body bytes."""
    s = strata()
    with RawConn(s.admin_port, timeout=10) as c:
        host = "127.0.0.1:%d" % s.admin_port
        auth = {"Authorization": "Bearer %s" % ADMIN_TOKEN}
        c.request("HEAD", "/_strata/health", auth, host=host)
        h = c.read_response("HEAD")
        assert h.status_code == 200
        c.request("GET", "/_strata/health", auth, host=host)
        g = c.read_response()
        # a body sent after the HEAD response would be read as the start of
        # this one
        assert g.version == "HTTP/1.1", "bytes before the next status line: %r" % g.version
        assert g.status_code == 200, g
        assert g.json()["status"] == "ok"


# ---- request ids ----------------------------------------------------------------------

def test_every_admin_response_has_a_request_id_and_they_differ(origin, strata):
    s = strata()
    rs = [
        s.admin_get("/_strata/health"),
        s.admin_get("/_strata/stats"),
        s.admin_get("/metrics"),
        s.admin_get("/_strata/explain?url=/x"),
        s.admin_get("/_strata/explain"),                       # 400
        s.admin_get("/_strata/health", token=None),            # 401
        s.admin_get("/_strata/nope"),                          # 404
        kv_get(s, "absent"),                                   # 404
        kv_put(s, "k", b"v"),
        s.admin_post("/_strata/invalidate", json={"keys": ["k"]}),
        s.admin_post("/_strata/invalidate", data=b"{}"),       # 415
        s.admin_request("DELETE", "/_strata/stats"),           # 405
    ]
    ids = [r.headers.get("X-Request-Id") for r in rs]
    assert all(ids), list(zip([r.status_code for r in rs], ids))
    assert len(set(ids)) == len(ids), ids
    for i in ids:
        assert re.fullmatch(r"[A-Za-z0-9._-]{1,36}", i), i


@pytest.mark.parametrize("rid", ["abc-123", "A.b_c-9", "x" * 36])
def test_valid_incoming_request_id_is_echoed(origin, strata, rid):
    s = strata()
    for r in (s.admin_get("/_strata/health", headers={"X-Request-Id": rid}),
              s.admin_get("/_strata/nope", headers={"X-Request-Id": rid}),
              s.admin_get("/_strata/health", token=None, headers={"X-Request-Id": rid})):
        assert r.headers.get("X-Request-Id") == rid, (r.status_code, r.headers)


@pytest.mark.parametrize("rid", ["x" * 37, "x" * 39, "has space", 'q"uote', "a=b",
                                 "semi;colon", "back\\slash"])
def test_invalid_incoming_request_id_is_replaced(origin, strata, rid):
    """The admin listener keeps the same ids the proxy keeps (1-36 bytes of
    [A-Za-z0-9._-]); anything else is replaced by strata's own (it goes into
    log lines unquoted)."""
    s = strata()
    r = s.admin_get("/_strata/health", headers={"X-Request-Id": rid})
    assert r.status_code == 200
    got = r.headers.get("X-Request-Id")
    assert got and got != rid, "invalid X-Request-Id %r was kept" % rid
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,36}", got), got


# ---- health ------------------------------------------------------------------------

def test_health(origin, strata):
    s = strata()
    r = s.admin_get("/_strata/health")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "ok"
    assert set(body["backends"]) == {"default", "session", "static", "http"}, body
    for name, b in body["backends"].items():
        assert b["ok"] is True, (name, b)


def test_health_lists_configured_caches(origin, strata):
    s = strata(caches={"extra": {"backend": "memory", "ttl": "1m"}})
    body = s.admin_get("/_strata/health").json()
    assert "extra" in body["backends"] and "http" in body["backends"], body
    assert body["backends"]["extra"]["ok"] is True


# ---- stats -------------------------------------------------------------------------

def test_stats_shape(origin, strata):
    s = strata(routes=ROUTES)
    st = stats(s)
    assert set(st["caches"]) == {"default", "session", "static", "http"}, st["caches"]
    for name, c in st["caches"].items():
        for f in CACHE_FIELDS:
            assert f in c, (name, f, c)
            assert isinstance(c[f], (int, float)) and not isinstance(c[f], bool), (name, f)
            assert c[f] >= 0, (name, f, c[f])
        for f in CACHE_FIELDS:
            if f != "hit_rate":
                assert isinstance(c[f], int), (name, f, c[f])
        assert 0 <= c["hit_rate"] <= 1
        assert c["max_bytes"] > 0
    assert st["caches"]["default"]["max_bytes"] == 256 << 20
    assert st["caches"]["session"]["max_bytes"] == 64 << 20
    assert st["caches"]["http"]["max_bytes"] == 512 << 20
    assert set(st["routes"]) == {"prod", "off", "expl", "w", "(none)"}, st["routes"]
    for name, rt in st["routes"].items():
        for f in ROUTE_FIELDS:
            assert f in rt, (name, f, rt)
            assert rt[f] == 0, (name, f, rt)
    assert isinstance(st["uptime_s"], (int, float)) and st["uptime_s"] >= 0


def test_stats_unnamed_route_is_keyed_by_its_path(origin, strata):
    s = strata(routes=[{"path": "/anon/*", "ttl": "1m"}])
    origin.route("/anon/1", body=b"x")
    s.get("/anon/1")
    wait_until(lambda: stats(s)["routes"].get("/anon/*", {}).get("requests") == 1, 10,
               msg="route /anon/* counted")


def test_stats_counters_move_with_requests(origin, strata):
    origin.route("/p/1", headers=CC60, body=b"one")
    s = strata(routes=ROUTES)
    before = stats(s)["caches"]["http"]
    r = s.get("/p/1")
    assert _fwd(r)
    after_miss = wait_stats(s, lambda st: st["routes"]["prod"]["requests"] == 1,
                            "the miss counted")
    assert after_miss["routes"]["prod"]["miss"] == 1
    h1 = after_miss["caches"]["http"]
    assert h1["items"] == before["items"] + 1
    assert h1["sets"] == before["sets"] + 1
    assert h1["misses"] >= before["misses"] + 1
    assert h1["bytes"] > before["bytes"]
    assert after_miss["routes"]["prod"]["upstream_seconds"] > 0

    r = s.get("/p/1")
    assert _hit(r)
    st = wait_stats(s, lambda st: st["routes"]["prod"]["requests"] == 2, "hit counted")
    prod = st["routes"]["prod"]
    assert (prod["requests"], prod["miss"], prod["hit"]) == (2, 1, 1), prod
    for f in ("stale", "bypass", "pass", "revalidated"):
        assert prod[f] == 0, (f, prod)
    h2 = st["caches"]["http"]
    assert h2["hits"] == h1["hits"] + 1, (h1, h2)
    assert h2["items"] == h1["items"]
    assert h2["sets"] == h1["sets"]
    assert h2["hit_rate"] == pytest.approx(h2["hits"] / (h2["hits"] + h2["misses"]))
    # other routes untouched
    for name in ("off", "expl", "w", "(none)"):
        assert st["routes"][name]["requests"] == 0, (name, st["routes"][name])


def test_stats_unmatched_request_counts_under_none(origin, strata):
    origin.route("/other", headers=CC60, body=b"x")
    s = strata(routes=ROUTES)
    s.get("/other")
    s.get("/other")
    st = wait_stats(s, lambda st: st["routes"]["(none)"]["requests"] == 2, "(none) counted")
    none = st["routes"]["(none)"]
    assert (none["miss"], none["hit"]) == (1, 1), none
    assert st["routes"]["prod"]["requests"] == 0


def test_stats_cache_false_route_counts_bypass(origin, strata):
    origin.route("/nc/1", headers=CC60, body=b"x")
    s = strata(routes=ROUTES)
    s.get("/nc/1")
    s.get("/nc/1")
    st = wait_stats(s, lambda st: st["routes"]["off"]["requests"] == 2, "bypass counted")
    off = st["routes"]["off"]
    assert (off["bypass"], off["hit"], off["miss"]) == (2, 0, 0), off
    assert origin.count("/nc/1") == 2
    assert st["caches"]["http"]["items"] == 0


def test_stats_post_counts_pass(origin, strata):
    origin.route("/p/form", method="POST", body=b"ok")
    s = strata(routes=ROUTES)
    s.post("/p/form", data=b"a=1")
    st = wait_stats(s, lambda st: st["routes"]["prod"]["requests"] == 1, "pass counted")
    assert st["routes"]["prod"]["pass"] == 1, st["routes"]["prod"]


def test_stats_kv_operations_move_the_cache_counters(origin, strata):
    s = strata()
    c0 = stats(s)["caches"]["default"]
    assert kv_put(s, "a", b"1").status_code == 200
    assert kv_get(s, "a").status_code == 200
    assert kv_get(s, "zz").status_code == 404
    assert kv_delete(s, "a").status_code == 200
    c1 = stats(s)["caches"]["default"]
    assert c1["sets"] == c0["sets"] + 1
    assert c1["hits"] == c0["hits"] + 1
    assert c1["misses"] == c0["misses"] + 1
    assert c1["deletes"] == c0["deletes"] + 1
    assert c1["items"] == c0["items"]
    assert stats(s)["caches"]["session"]["sets"] == 0


def test_stats_evictions_and_bounds(origin, strata):
    s = strata(caches={"tiny": {"backend": "memory", "max_memory": "64KB", "ttl": "1h"}})
    for i in range(200):
        assert kv_put(s, "e%03d" % i, b"v" * 1024, cache="tiny").status_code == 200
    t = stats(s)["caches"]["tiny"]
    assert t["max_bytes"] == 64 * 1024
    assert t["sets"] == 200
    assert t["evictions"] > 0 and t["items"] < 200, t
    assert t["items"] + t["evictions"] == 200, t
    assert t["bytes"] <= t["max_bytes"] + 2 * 1024, t


def test_explain_does_not_move_the_http_cache_counters(origin, strata):
    """explain is a diagnostic: looking at an object must not count as a
    cache hit (nor a miss), or every look skews hit_rate."""
    origin.route("/e/obj", headers=CC60, body=b"x")
    s = strata(routes=ROUTES)
    _primed(s, "/e/obj")
    before = stats(s)["caches"]["http"]
    explain(s, "/e/obj")
    explain(s, "/e/never-seen")
    after = stats(s)["caches"]["http"]
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"]), \
        (before, after)


# ---- invalidate -----------------------------------------------------------------------

def _seed_kv(s):
    for cache in ("default", "session"):
        for k in ("k1", "k2", "user:1", "user:2", "item:1"):
            assert kv_put(s, k, ("%s/%s" % (cache, k)).encode(), cache=cache).status_code == 200
    assert kv_put(s, "tagged-a", b"a", "tags=a").status_code == 200
    assert kv_put(s, "tagged-ab", b"ab", "tags=a,b").status_code == 200
    assert kv_put(s, "tagged-b", b"b", "tags=b").status_code == 200


def _present(s, key, cache="default"):
    r = kv_get(s, key, cache=cache)
    assert r.status_code in (200, 404), (r.status_code, r.text)
    return r.status_code == 200


def test_invalidate_keys_in_one_cache_then_every_cache(origin, strata):
    s = strata()
    _seed_kv(s)
    out = s.invalidate(cache="default", keys=["k1", "absent"])
    assert out == {"removed": 1, "exact": True}, out
    assert not _present(s, "k1") and _present(s, "k2")
    assert _present(s, "k1", "session")
    out = s.invalidate(keys=["k2"])  # no cache: every cache
    assert out["removed"] == 2, out
    assert not _present(s, "k2") and not _present(s, "k2", "session")
    assert _present(s, "k1", "session")


def test_invalidate_patterns(origin, strata):
    s = strata()
    _seed_kv(s)
    out = s.invalidate(cache="default", patterns=["user:*"])
    assert out["removed"] == 2, out
    assert not _present(s, "user:1") and not _present(s, "user:2")
    assert _present(s, "item:1") and _present(s, "user:1", "session")
    assert stats(s)["caches"]["default"]["invalidated"] == 2
    out = s.invalidate(patterns=["[ik]*"])  # every cache: item:1 k1 k2 ...
    assert out["removed"] >= 5, out
    for k in ("item:1", "k1", "k2"):
        assert not _present(s, k) and not _present(s, k, "session"), k
    assert _present(s, "user:1", "session")


def test_invalidate_tags(origin, strata):
    s = strata()
    _seed_kv(s)
    out = s.invalidate(cache="default", tags=["a"])
    assert out["exact"] is False, out
    assert not _present(s, "tagged-a") and not _present(s, "tagged-ab")
    assert _present(s, "tagged-b") and _present(s, "k1")
    s.invalidate(tags=["b"])
    assert not _present(s, "tagged-b") and _present(s, "k1")


def test_invalidate_all_in_one_cache_then_every_cache(origin, strata):
    origin.route("/p/1", headers=CC60, body=b"x")
    s = strata(routes=ROUTES)
    _seed_kv(s)
    _primed(s, "/p/1")
    out = s.invalidate(cache="default", all=True)
    assert out["removed"] == 8, out
    for k in ("k1", "user:1", "tagged-a"):
        assert not _present(s, k)
    assert _present(s, "k1", "session")
    assert _hit(s.get("/p/1"))
    out = s.invalidate(all=True)
    assert out["removed"] >= 6, out
    assert not _present(s, "k1", "session")
    assert _fwd(s.get("/p/1"))
    assert origin.count("/p/1") == 2


def test_invalidate_all_false_does_nothing(origin, strata):
    s = strata()
    _seed_kv(s)
    assert s.invalidate(all=False)["removed"] == 0
    assert _present(s, "k1")


def test_invalidate_http_urls_patterns_tags(origin, strata):
    for p in ("/p/1", "/p/2", "/p/3?x=1", "/p/3?x=2", "/e/t"):
        origin.route(p, headers={**CC60, "Surrogate-Key": "grp"} if p == "/e/t" else CC60,
                     body=p.encode())
    s = strata(routes=ROUTES)
    for p in ("/p/1", "/p/2", "/p/3?x=1", "/p/3?x=2", "/e/t"):
        _primed(s, p)
    # a path
    s.invalidate(urls=["/p/1"])
    r = s.get("/p/1")
    assert _fwd(r) and r.content == b"/p/1"
    assert _hit(s.get("/p/2"))
    # an absolute URL on strata's host
    s.invalidate(cache="http", urls=["http://%s/p/2" % s.host])
    assert _fwd(s.get("/p/2"))
    # an absolute URL on another host leaves this one
    s.invalidate(urls=["http://other.example/p/1"])
    assert _hit(s.get("/p/1"))
    # a url pattern over path?query
    out = s.invalidate(url_patterns=["/p/3?x=1"])
    assert out["removed"] == 1, out
    assert _fwd(s.get("/p/3?x=1")) and _hit(s.get("/p/3?x=2"))
    s.invalidate(url_patterns=["/p/*"])
    for p in ("/p/1", "/p/2", "/p/3?x=2"):
        assert _fwd(s.get(p)), p
    assert _hit(s.get("/e/t"))
    # a tag from the response header
    s.invalidate(tags=["grp"])
    assert _fwd(s.get("/e/t"))


def test_invalidate_http_in_another_cache_leaves_http_objects(origin, strata):
    origin.route("/p/1", headers=CC60, body=b"x")
    s = strata(routes=ROUTES)
    _primed(s, "/p/1")
    s.invalidate(cache="default", urls=["/p/1"], url_patterns=["/p/*"])
    assert _hit(s.get("/p/1"))


@pytest.mark.parametrize("body", [b"{", b"", b"not json", b'{"keys": ["k1"]', b"[1, 2]",
                                  b'"all"', b"null"])
def test_invalidate_bad_json_is_400(origin, strata, body):
    s = strata()
    _seed_kv(s)
    r = _admin_raw(s, "POST", "/_strata/invalidate", headers=JSON_CT, body=body)
    _err(r, 400)
    assert _present(s, "k1")


@pytest.mark.parametrize("field", ["kes", "Keys", "cache_name", "purge"])
def test_invalidate_unknown_field_is_400_naming_it(origin, strata, field):
    s = strata()
    _seed_kv(s)
    r = s.admin_post("/_strata/invalidate", json={field: ["k1"], "keys": ["k1"]})
    _err(r, 400, mention=field)
    assert _present(s, "k1")


@pytest.mark.parametrize("body,field", [
    ({"keys": "k1"}, "keys"),
    ({"keys": ["k2", 1]}, "keys"),
    ({"keys": {"k1": 1}}, "keys"),
    ({"patterns": "user:*"}, "patterns"),
    ({"patterns": [None]}, "patterns"),
    ({"tags": "a"}, "tags"),
    ({"tags": [""]}, "tags"),
    ({"tags": ["has space"]}, "tags"),
    ({"tags": ["x" * 257]}, "tags"),
    ({"urls": "/p/1"}, "urls"),
    ({"urls": ["p/1"]}, "urls"),
    ({"url_patterns": [3]}, "url_patterns"),
    ({"all": "yes"}, "all"),
    ({"all": 1}, "all"),
    ({"cache": 5, "keys": ["k2"]}, "cache"),
    ({"cache": ["default"], "keys": ["k2"]}, "cache"),
])
def test_invalidate_wrong_types_are_400_and_do_nothing(origin, strata, body, field):
    s = strata()
    _seed_kv(s)
    # The valid parts of a refused request must not be applied either.
    body = dict(body)
    if field != "keys":
        body.setdefault("keys", ["k2"])
    r = s.admin_post("/_strata/invalidate", json=body)
    _err(r, 400, mention=field)
    assert _present(s, "k1") and _present(s, "k2") and _present(s, "tagged-a")


def test_invalidate_unknown_cache_is_404(origin, strata):
    s = strata()
    _seed_kv(s)
    r = s.admin_post("/_strata/invalidate", json={"cache": "nope", "keys": ["k1"]})
    _err(r, 404, mention="nope")
    assert _present(s, "k1")


def test_invalidate_empty_object_removes_nothing(origin, strata):
    s = strata()
    _seed_kv(s)
    assert s.invalidate() == {"removed": 0, "exact": True}
    assert _present(s, "k1")


# ---- key-value API ------------------------------------------------------------------------

BINARY = b"\x00\x01bin\xff\xfe\x80\x00 \r\n\xc3\x28 end\x00"


def test_kv_put_get_binary_value(origin, strata):
    s = strata()
    r = kv_put(s, "bin", BINARY, "ttl=5m&tags=a,b")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json().get("stored") is True
    r = kv_get(s, "bin")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.content == BINARY
    assert int(r.headers["Content-Length"]) == len(BINARY)
    # the value is in `default` only
    _err(kv_get(s, "bin", cache="session"), 404)


@pytest.mark.parametrize("key", ["dir/sub/leaf", "with space", "100%", "a%2Fb literally",
                                 "q?x=1&y=2#frag", "ünïcödé", b"\x00nul\x00", b"\xff\xfe",
                                 "+plus+"])
def test_kv_keys_are_percent_decoded(origin, strata, key):
    s = strata()
    value = b"value of " + (key if isinstance(key, bytes) else key.encode())
    assert kv_put(s, key, value).status_code == 200
    r = kv_get(s, key)
    assert r.status_code == 200 and r.content == value
    if isinstance(key, str):
        # the stored key is the decoded one: invalidation by that literal key
        # (JSON) reaches it
        out = s.invalidate(cache="default", keys=[key])
        assert out["removed"] == 1, (key, out)
        _err(kv_get(s, key), 404)


def test_kv_distinct_encodings_are_distinct_keys(origin, strata):
    s = strata()
    assert kv_put(s, "a/b", b"slash").status_code == 200
    assert kv_put(s, "a%2Fb", b"literal").status_code == 200
    assert kv_get(s, "a/b").content == b"slash"
    assert kv_get(s, "a%2Fb").content == b"literal"
    # '+' in a path is a plus, not a space
    assert kv_put(s, "x y", b"space").status_code == 200
    r = s.admin_get("/_strata/caches/default/keys/x+y")
    _err(r, 404)


def test_kv_bad_percent_encoding_is_400(origin, strata):
    s = strata()
    for target in ("/_strata/caches/default/keys/%zz", "/_strata/caches/default/keys/ab%2",
                   "/_strata/caches/default/keys/ab%"):
        r = _admin_raw(s, "PUT", target, body=b"v")
        _err(r, 400)


def test_kv_empty_and_large_values(origin, strata):
    s = strata()
    assert kv_put(s, "empty", b"").status_code == 200
    r = kv_get(s, "empty")
    assert r.status_code == 200 and r.content == b""
    big = bytes(range(256)) * (3 * 4096)  # 3 MB: PUT is not held to the 1 MB JSON limit
    assert kv_put(s, "big", big).status_code == 200
    r = kv_get(s, "big")
    assert r.status_code == 200 and r.content == big


def test_kv_head(origin, strata):
    """HEAD of a key: 200 (404 when absent), no body, and a Content-Length
    that is the value's (RFC 9110 8.6: a Content-Length sent to HEAD MUST be
    what GET would send)."""
    s = strata()
    assert kv_put(s, "h", BINARY).status_code == 200
    with RawConn(s.admin_port, timeout=10) as c:
        host = "127.0.0.1:%d" % s.admin_port
        auth = {"Authorization": "Bearer %s" % ADMIN_TOKEN}
        c.request("HEAD", _key_url("default", "h"), auth, host=host)
        h = c.read_response("HEAD")
        assert h.status_code == 200
        assert h.headers["Content-Type"] == "application/octet-stream"
        assert h.headers.get("Content-Length") in (None, str(len(BINARY))), h.headers
        c.request("HEAD", _key_url("default", "absent"), auth, host=host)
        n = c.read_response("HEAD")
        assert n.version == "HTTP/1.1", "bytes before the next status line: %r" % n.version
        assert n.status_code == 404
        c.request("GET", _key_url("default", "h"), auth, host=host)
        g = c.read_response()
        assert g.version == "HTTP/1.1", "bytes before the next status line: %r" % g.version
        assert g.status_code == 200 and g.content == BINARY


def test_kv_overwrite(origin, strata):
    s = strata()
    assert kv_put(s, "k", b"one").status_code == 200
    assert kv_put(s, "k", b"two").status_code == 200
    assert kv_get(s, "k").content == b"two"


def test_kv_delete(origin, strata):
    s = strata()
    assert kv_put(s, "d", b"x").status_code == 200
    r = kv_delete(s, "d")
    assert r.status_code == 200, r.text
    _err(kv_get(s, "d"), 404)
    _err(kv_delete(s, "d"), 404)
    _err(kv_delete(s, "never-there"), 404)


def test_kv_unknown_cache_is_404(origin, strata):
    s = strata()
    _err(kv_put(s, "k", b"v", cache="nope"), 404, mention="nope")
    _err(kv_get(s, "k", cache="nope"), 404)
    _err(kv_delete(s, "k", cache="nope"), 404)


def test_kv_other_caches(origin, strata):
    s = strata()
    assert kv_put(s, "k", b"sess", cache="session").status_code == 200
    assert kv_put(s, "k", b"stat", cache="static").status_code == 200
    assert kv_get(s, "k", cache="session").content == b"sess"
    assert kv_get(s, "k", cache="static").content == b"stat"
    _err(kv_get(s, "k"), 404)


@pytest.mark.parametrize("ttl", ["5", "abc", "", "-5s", "5x", "1.5s", "%zz", "5s5"])
def test_kv_bad_ttl_is_400_and_stores_nothing(origin, strata, ttl):
    s = strata()
    # raw: `requests` would re-quote a bad escape such as %zz
    r = _admin_raw(s, "PUT", "/_strata/caches/default/keys/t?ttl=" + ttl, body=b"v")
    _err(r, 400, mention="ttl")
    _err(kv_get(s, "t"), 404)


@pytest.mark.parametrize("tags", ["a%20b", "a%22b", "a%5Cb", "x" * 257, "%zz",
                                  ",".join("t%d" % i for i in range(65))])
def test_kv_bad_tag_is_400_and_stores_nothing(origin, strata, tags):
    s = strata()
    r = _admin_raw(s, "PUT", "/_strata/caches/default/keys/t?tags=" + tags, body=b"v")
    _err(r, 400)
    _err(kv_get(s, "t"), 404)


def test_kv_64_tags_are_accepted(origin, strata):
    s = strata()
    tags = ",".join("t%d" % i for i in range(64))
    assert kv_put(s, "k", b"v", "tags=" + tags).status_code == 200
    s.invalidate(cache="default", tags=["t63"])
    _err(kv_get(s, "k"), 404)


def test_kv_ttl_expiry(origin, strata):
    s = strata()
    assert kv_put(s, "short", b"v", "ttl=5s").status_code == 200
    assert kv_put(s, "long", b"v", "ttl=1h").status_code == 200
    s.advance(4000)
    assert kv_get(s, "short").status_code == 200
    s.advance(2000)
    _err(kv_get(s, "short"), 404)
    assert kv_get(s, "long").status_code == 200
    assert stats(s)["caches"]["default"]["expired"] == 1


def test_kv_default_ttl_is_the_caches(origin, strata):
    s = strata()  # default: ttl 5m
    assert kv_put(s, "dflt", b"v").status_code == 200
    s.advance(4 * 60 * 1000)
    assert kv_get(s, "dflt").status_code == 200
    s.advance(2 * 60 * 1000)
    _err(kv_get(s, "dflt"), 404)


def test_kv_ttl_never(origin, strata):
    s = strata()
    assert kv_put(s, "forever", b"v", "ttl=never").status_code == 200
    assert kv_put(s, "dflt", b"v").status_code == 200
    s.advance(400 * 24 * 3600 * 1000)
    assert kv_get(s, "forever").content == b"v"
    _err(kv_get(s, "dflt"), 404)


def test_kv_tags(origin, strata):
    s = strata()
    assert kv_put(s, "k1", b"1", "ttl=5m&tags=a,b").status_code == 200
    assert kv_put(s, "k2", b"2", "tags=b").status_code == 200
    assert kv_put(s, "k3", b"3", "tags=c").status_code == 200
    assert kv_put(s, "k4", b"4", "tags=A").status_code == 200
    s.invalidate(cache="default", tags=["a"])
    _err(kv_get(s, "k1"), 404)
    assert kv_get(s, "k2").status_code == 200
    assert kv_get(s, "k4").status_code == 200  # tags are case-sensitive
    s.invalidate(tags=["b"])
    _err(kv_get(s, "k2"), 404)
    assert kv_get(s, "k3").status_code == 200
    # a later set with the same tag is live again
    assert kv_put(s, "k1", b"again", "tags=a").status_code == 200
    assert kv_get(s, "k1").content == b"again"


# ---- explain -----------------------------------------------------------------------------

def test_explain_stored_response(origin, strata):
    origin.route("/e/stored", headers={"Cache-Control": "public, max-age=120"}, body=b"x")
    s = strata(routes=ROUTES)
    assert _fwd(s.get("/e/stored"))
    x = explain(s, "/e/stored")
    assert x["stored"] is True, x
    assert x["route"] == "expl"
    assert x["cache_control"] == "public, max-age=120"
    assert x["status"] == 200
    assert 118 <= x["object"]["ttl_s"] <= 120, x
    assert "fresh" in x["reason"], x
    assert x["key"] == "h:%s/e/stored" % s.host, x
    assert x["last_response"]["stored"] is True


def test_explain_stored_response_with_query_and_absolute_url(origin, strata):
    origin.route("/e/q?x=1&y=2", headers=CC60, body=b"x")
    s = strata(routes=ROUTES)
    s.get("/e/q?x=1&y=2")
    x = explain(s, "/e/q?x=1&y=2")
    assert x["stored"] is True, x
    x = explain(s, "http://%s/e/q?x=1&y=2" % s.host)
    assert x["stored"] is True and x["route"] == "expl", x
    x = explain(s, "/e/q?x=1")  # another query: another object
    assert x["stored"] is False, x
    x = explain(s, "http://other.example/e/q?x=1&y=2")  # another host
    assert x["stored"] is False, x


@pytest.mark.parametrize("headers,detail,words", [
    ({"Cache-Control": "no-store"}, "no-store", ["no-store"]),
    ({"Cache-Control": "private, max-age=60"}, "private", ["private"]),
    ({"Cache-Control": "max-age=60", "Set-Cookie": "sid=1"}, "set-cookie", ["cookie"]),
])
def test_explain_not_stored(origin, strata, headers, detail, words):
    origin.route("/e/ns", headers=headers, body=b"x")
    s = strata(routes=ROUTES)
    s.get("/e/ns")
    x = explain(s, "/e/ns")
    assert x["stored"] is False, x
    assert x["route"] == "expl"
    assert x["cache_control"] == headers["Cache-Control"], x
    assert x["last_response"]["detail"] == detail, x
    assert x["last_response"]["stored"] is False
    assert "object" not in x
    for w in words:
        assert w in x["reason"].lower(), x


def test_explain_url_never_requested(origin, strata):
    s = strata(routes=ROUTES)
    x = explain(s, "/e/never")
    assert x["stored"] is False
    assert x["route"] == "expl"
    assert x["cache_control"] is None and x["status"] is None, x
    assert "last_response" not in x
    assert "seen" in x["reason"], x
    x = explain(s, "/nowhere")
    assert x["route"] is None, x


def test_explain_cache_false_route(origin, strata):
    origin.route("/nc/x", headers=CC60, body=b"x")
    s = strata(routes=ROUTES)
    s.get("/nc/x")
    x = explain(s, "/nc/x")
    assert x["stored"] is False
    assert x["route"] == "off"
    assert "cache: false" in x["reason"], x


def test_explain_after_expiry_and_invalidation(origin, strata):
    origin.route("/e/exp", headers={"Cache-Control": "max-age=10"}, body=b"x")
    s = strata(routes=ROUTES)
    s.get("/e/exp")
    assert explain(s, "/e/exp")["stored"] is True
    s.invalidate(urls=["/e/exp"])
    x = explain(s, "/e/exp")
    assert x["stored"] is False and "object" not in x, x


@pytest.mark.parametrize("query", ["", "?", "?url=", "?host=x", "?url=e/x", "?url=x",
                                   "?url=%zz", "?url=ftp%3A%2F%2Fhost%2Fx"])
def test_explain_bad_url_is_400(origin, strata, query):
    s = strata(routes=ROUTES)
    _err(_admin_raw(s, "GET", "/_strata/explain" + query), 400)


# ---- warm --------------------------------------------------------------------------------

def test_warm_stores_each_url_in_order(origin, strata):
    for i in range(1, 5):
        origin.route("/w/%d" % i, headers=CC60, body=b"w%d" % i)
    s = strata(routes=ROUTES)
    urls = ["/w/3", "/w/1", "/w/4", "/w/2"]
    r = warm(s, {"urls": urls, "concurrency": 2})
    assert r.status_code == 200, r.text
    out = r.json()
    assert isinstance(out, list) and [o["url"] for o in out] == urls, out
    for o in out:
        assert o["status"] == 200, o
        assert "stored" in o["cache_status"] and "strata" in o["cache_status"], o
        assert isinstance(o["seconds"], (int, float)) and o["seconds"] >= 0, o
    for u in urls:
        r = s.get(u)
        assert _hit(r), (u, r.headers.get("Cache-Status"))
        assert r.content == b"w" + u[-1].encode()
        assert origin.count(u) == 1
    # warming again: hits, no origin request
    out = warm(s, {"urls": urls}).json()
    assert all("hit" in cs_params(o["cache_status"].split(",")[-1].strip()) for o in out), out
    assert origin.count() == 4


def test_warm_reports_origin_status(origin, strata):
    origin.route("/w/ok", headers=CC60, body=b"ok")
    origin.route("/w/err", status=503, body=b"down")
    s = strata(routes=ROUTES)
    out = warm(s, {"urls": ["/w/ok", "/w/missing", "/w/err"]}).json()
    assert [o["status"] for o in out] == [200, 404, 503], out
    assert origin.count("/w/missing") == 1


def test_warm_sends_headers_to_the_origin(origin, strata):
    origin.route("/w/h", headers=CC60, body=b"x")
    s = strata(routes=ROUTES)
    r = warm(s, {"urls": ["/w/h"], "headers": {"X-Warm": "yes", "Accept-Language": "fr"}})
    assert r.status_code == 200, r.text
    req = origin.last("/w/h")
    assert req.headers.get("X-Warm") == "yes"
    assert req.headers.get("Accept-Language") == "fr"


def test_warm_absolute_url_uses_its_host(origin, strata):
    origin.route("/w/abs", headers=CC60, body=b"abs")
    s = strata(routes=ROUTES)
    out = warm(s, {"urls": ["http://other.host/w/abs"]}).json()
    assert out[0]["status"] == 200 and out[0]["url"] == "http://other.host/w/abs", out
    assert origin.last("/w/abs").headers.get("Host") == "other.host"
    r = s.get("/w/abs", headers={"Host": "other.host"})
    assert _hit(r) and r.content == b"abs"
    assert origin.count("/w/abs") == 1
    r = s.get("/w/abs")  # strata's own host: another object
    assert _fwd(r)
    assert origin.count("/w/abs") == 2


def test_warm_path_uses_the_proxy_host(origin, strata):
    origin.route("/w/p", headers=CC60, body=b"p")
    s = strata(routes=ROUTES)
    warm(s, {"urls": ["/w/p"]})
    assert _hit(s.get("/w/p"))  # requests sends Host: 127.0.0.1:PORT


@pytest.mark.parametrize("body,field", [
    ({}, "urls"),
    ({"urls": []}, "urls"),
    ({"urls": "/w/1"}, "urls"),
    ({"urls": [1]}, "urls"),
    ({"urls": ["/w/1", None]}, "urls"),
    ({"urls": ["w/1"]}, "urls"),
    ({"urls": [""]}, "urls"),
    ({"urls": ["ftp://x/w/1"]}, "urls"),
    ({"urls": ["http:///w/1"]}, "urls"),
    ({"urls": ["/w/1 x"]}, "urls"),
    ({"urls": ["/w/1"], "concurrency": 0}, "concurrency"),
    ({"urls": ["/w/1"], "concurrency": 65}, "concurrency"),
    ({"urls": ["/w/1"], "concurrency": -1}, "concurrency"),
    ({"urls": ["/w/1"], "concurrency": "2"}, "concurrency"),
    ({"urls": ["/w/1"], "concurrency": 2.5}, "concurrency"),
    ({"urls": ["/w/1"], "headers": ["X: y"]}, "headers"),
    ({"urls": ["/w/1"], "headers": {"X-A": 1}}, "headers"),
    ({"urls": ["/w/1"], "headers": {"Bad Name": "v"}}, "headers"),
    ({"urls": ["/w/1"], "headers": {"X-A": "a\r\nInjected: 1"}}, "headers"),
    ({"urls": ["/w/1"], "headers": {"Content-Length": "5"}}, "headers"),
    ({"urls": ["/w/1"], "url": "/w/2"}, "url"),
    ({"urls": ["/w/1"], "Concurrency": 2}, "Concurrency"),
])
def test_warm_bad_input_is_400_and_fetches_nothing(origin, strata, body, field):
    origin.route("/w/1", headers=CC60, body=b"x")
    s = strata(routes=ROUTES)
    r = warm(s, body)
    _err(r, 400, mention=field)
    assert origin.count() == 0


def test_warm_bad_json_is_400(origin, strata):
    s = strata(routes=ROUTES)
    _err(s.admin_post("/_strata/warm", data=b"{", headers=JSON_CT), 400)
    _err(s.admin_post("/_strata/warm", data=b'["/w/1"]', headers=JSON_CT), 400)
    assert origin.count() == 0


def test_warm_concurrency_64_is_accepted(origin, strata):
    origin.route("/w/c", headers=CC60, body=b"x")
    s = strata(routes=ROUTES)
    r = warm(s, {"urls": ["/w/c"], "concurrency": 64})
    assert r.status_code == 200 and r.json()[0]["status"] == 200, r.text


class _Held:
    """Origin handler: counts requests in flight (max too) and holds each
    until the test hands out a ticket."""

    def __init__(self):
        self.cv = threading.Condition()
        self.inflight = 0
        self.max = 0
        self.tickets = 0
        self.order = []

    def __call__(self, req):
        with self.cv:
            self.inflight += 1
            self.max = max(self.max, self.inflight)
            self.order.append(req.target)
            self.cv.notify_all()
            deadline = time.monotonic() + 20
            while self.tickets == 0 and time.monotonic() < deadline:
                self.cv.wait(0.05)
            if self.tickets:
                self.tickets -= 1
            self.inflight -= 1
            self.cv.notify_all()
        return 200, CC60, req.target.encode()

    def wait(self, pred, what, timeout=10):
        deadline = time.monotonic() + timeout
        with self.cv:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("origin: timed out waiting for %s (inflight %d, "
                                         "arrived %r)" % (what, self.inflight, self.order))
                self.cv.wait(left)

    def grant(self, n=1):
        with self.cv:
            self.tickets += n
            self.cv.notify_all()


def _warm_in_thread(s, body):
    res = {}

    def run():
        try:
            res["r"] = warm(s, body, timeout=60)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            res["e"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, res


@pytest.mark.parametrize("conc", [1, 2])
def test_warm_concurrency_bound(origin, strata, conc):
    n = 6
    held = _Held()
    urls = ["/w/g%d" % i for i in range(n)]
    for u in urls:
        origin.route(u, handler=held)
    s = strata(routes=ROUTES)
    t, res = _warm_in_thread(s, {"urls": urls, "concurrency": conc})
    try:
        for done in range(n):
            # exactly min(conc, left) requests are held at the origin: the
            # next one starts only when one of them is answered
            want = min(conc, n - done)
            held.wait(lambda: held.inflight == want and len(held.order) == done + want,
                      "%d in flight, %d arrived" % (want, done + want))
            held.grant(1)
    finally:
        held.grant(100)  # never leave origin threads held
    t.join(30)
    assert not t.is_alive(), "warm did not answer"
    assert "e" not in res, res.get("e")
    r = res["r"]
    assert r.status_code == 200, r.text
    assert [o["url"] for o in r.json()] == urls
    assert [o["status"] for o in r.json()] == [200] * n
    assert held.max == conc, "at most %d requests at once expected, saw %d" % (conc, held.max)
    assert sorted(held.order) == sorted(urls) and len(held.order) == n  # each once
    if conc == 1:
        assert held.order == urls  # one at a time, in the order given
    for u in urls:
        assert _hit(s.get(u)), u


def test_warm_client_gone_midway(origin, strata):
    """The client of a warm leaves while URLs are being fetched: strata stops
    that warm without crashing and keeps serving (teardown checks ASan)."""
    gate = origin.gate()
    for i in range(3):
        origin.route("/w/gone%d" % i, headers=CC60, body=b"x", gate=gate)
    origin.route("/w/after", headers=CC60, body=b"after")
    s = strata(routes=ROUTES)
    body = b'{"urls": ["/w/gone0", "/w/gone1", "/w/gone2"], "concurrency": 2}'
    c = RawConn(s.admin_port, timeout=10)
    try:
        c.request("POST", "/_strata/warm",
                  {"Authorization": "Bearer %s" % ADMIN_TOKEN, **JSON_CT}, body,
                  host="127.0.0.1:%d" % s.admin_port)
        gate.wait_waiting(2)
    finally:
        c.close()
    gate.release()
    r = warm(s, {"urls": ["/w/after"]})
    assert r.status_code == 200 and r.json()[0]["status"] == 200, r.text
    assert _hit(s.get("/w/after"))
    assert s.admin_get("/_strata/health").status_code == 200
    assert s.alive()


def test_warm_many_urls_one_connection_each_result(origin, strata):
    urls = ["/w/m%d" % i for i in range(40)]
    for u in urls:
        origin.route(u, headers=CC60, body=u.encode())
    s = strata(routes=ROUTES)
    r = warm(s, {"urls": urls, "concurrency": 8})
    assert r.status_code == 200
    out = r.json()
    assert [o["url"] for o in out] == urls
    assert all(o["status"] == 200 for o in out), out
    assert all(origin.count(u) == 1 for u in urls)
    assert all(_hit(s.get(u)) for u in urls[::7])


# ---- body limits -------------------------------------------------------------------------

def test_post_body_over_1mb_is_413(origin, strata):
    s = strata()
    assert kv_put(s, "k", b"v").status_code == 200
    big = b'{"keys": ["k"], "pad": "' + b"x" * (1 << 20) + b'"}'
    r = s.admin_post("/_strata/invalidate", data=big, headers=JSON_CT)
    _err(r, 413)
    assert r.headers.get("X-Request-Id")
    assert kv_get(s, "k").status_code == 200
    r = s.admin_post("/_strata/warm", data=big, headers=JSON_CT)
    _err(r, 413)
    assert origin.count() == 0
    # the listener still answers
    assert s.admin_get("/_strata/health").status_code == 200


def test_post_body_just_under_1mb_is_read(origin, strata):
    s = strata()
    assert kv_put(s, "k", b"v").status_code == 200
    head, tail = b'{"keys": ["k"], "cache": "default", "padding_field": "', b'"}'
    body = head + b"x" * ((1 << 20) - len(head) - len(tail)) + tail
    assert len(body) == 1 << 20
    r = s.admin_post("/_strata/invalidate", data=body, headers=JSON_CT)
    _err(r, 400, mention="padding_field")  # read and parsed, not 413
    assert kv_get(s, "k").status_code == 200


# ---- test-only endpoints ------------------------------------------------------------------

def test_debug_clock_moves_strata_clock(origin, strata):
    s = strata()
    assert kv_put(s, "c", b"v", "ttl=10s").status_code == 200
    r = s.admin_post("/_strata/debug/clock", json={"advance_ms": 0})
    assert r.status_code == 200, r.text
    t0 = r.json()["now_ms"]
    r = s.admin_post("/_strata/debug/clock", json={"advance_ms": 11000})
    assert r.status_code == 200
    assert r.json()["now_ms"] >= t0 + 11000
    _err(kv_get(s, "c"), 404)


@pytest.mark.parametrize("body,mention", [
    ({}, "advance_ms"),
    ({"advance_ms": -1}, "advance_ms"),
    ({"advance_ms": "5"}, "advance_ms"),
    ({"advance_ms": 1.5}, "advance_ms"),
    ({"advance_ms": 5, "bogus_field": 1}, "bogus_field"),
])
def test_debug_clock_bad_input_is_400(origin, strata, body, mention):
    s = strata()
    r = s.admin_post("/_strata/debug/clock", json=body)
    _err(r, 400, mention=mention)


def test_debug_flights_counts_waiters(origin, strata):
    s = strata()
    r = s.admin_get("/_strata/debug/flights")
    assert r.status_code == 200 and r.json() == {"waiters": 0, "warms": 0}, r.text


def test_debug_endpoints_need_the_test_clock(origin, strata):
    s = strata(env={"STRATA_TEST_CLOCK": None})
    _err(s.admin_post("/_strata/debug/clock", json={"advance_ms": 1000}), 404)
    _err(s.admin_get("/_strata/debug/flights"), 404)
    assert s.admin_get("/_strata/health").status_code == 200
