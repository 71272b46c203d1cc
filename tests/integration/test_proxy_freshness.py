"""strata serve: freshness (s-maxage > max-age > Expires), Age, validators,
conditional requests from clients (304), revalidation upstream with 304
freshening, no-cache, must-revalidate, `keep`. TTLs pass by moving strata's
clock (STRATA_TEST_CLOCK=1), never by sleeping."""
import time

from proxyutil import assert_cs, cache_status, cs_params, http_date, numbered

STORED = "strata; fwd=uri-miss; fwd-status=200; stored"
LM = "Tue, 01 Oct 2024 10:00:00 GMT"
LM_BEFORE = "Mon, 30 Sep 2024 10:00:00 GMT"
LM_AFTER = "Wed, 02 Oct 2024 10:00:00 GMT"


def validating(etag='"v1"', lm=LM, cc="max-age=10", body=b"the body", on304=None,
               changed=None):
    """An origin that answers 304 to a matching conditional request.
    on304: headers of the 304; changed: (headers, body) of a 200 sent
    instead of the 304 when set (changed[0] True)."""
    state = {"changed": None}

    def h(req):
        if state["changed"] is not None:
            return state["changed"]
        inm = req.headers.get("If-None-Match")
        ims = req.headers.get("If-Modified-Since")
        if (etag and inm == etag) or (inm is None and lm and ims == lm):
            hs = {"ETag": etag} if etag else {}
            hs.update(on304 or {})
            return 304, hs, b""
        hs = {"Cache-Control": cc}
        if etag:
            hs["ETag"] = etag
        if lm:
            hs["Last-Modified"] = lm
        return 200, hs, body

    h.state = state
    return h


# ---- freshness lifetime ---------------------------------------------------------------

def test_freshness_precedence_s_maxage_max_age_expires(origin, strata):
    now = time.time()
    exp = http_date(now + 300)
    date = http_date(now)
    origin.route("/f1", headers={"Date": date, "Expires": exp,
                                 "Cache-Control": "max-age=60, s-maxage=120"}, body=b"1")
    origin.route("/f2", headers={"Date": date, "Expires": exp, "Cache-Control": "max-age=60"},
                 body=b"2")
    origin.route("/f3", headers={"Date": date, "Expires": exp}, body=b"3")
    origin.route("/f4", headers={"Expires": "0", "Cache-Control": "max-age=60"}, body=b"4")
    s = strata()
    for path, ttl in (("/f1", 120), ("/f2", 60), ("/f3", 300), ("/f4", 60)):
        assert_cs(s.get(path), STORED)
        r = s.get(path)
        assert r.status_code == 200
        assert_cs(r, "strata; hit; ttl=%d" % ttl)
    assert origin.count() == 4


def test_expires_in_the_past_is_not_fresh(origin, strata):
    now = time.time()
    origin.route("/past", handler=numbered(headers={"Date": http_date(now),
                                                    "Expires": http_date(now - 60)}))
    s = strata()
    assert s.get("/past").content == b"v1"
    r = s.get("/past")
    assert r.content == b"v2"
    assert "hit" not in cs_params(cache_status(r))
    assert origin.count() == 2


def test_fresh_until_ttl_then_refetched(origin, strata):
    origin.route("/ttl", handler=numbered(headers={"Cache-Control": "max-age=10"}))
    s = strata()
    assert s.get("/ttl").content == b"v1"
    s.advance(9_000)
    r = s.get("/ttl")
    assert r.content == b"v1"
    assert_cs(r, "strata; hit; ttl=1")
    s.advance(2_000)
    r = s.get("/ttl")
    assert r.content == b"v2"
    p = cs_params(cache_status(r))
    assert p.get("fwd") in ("uri-miss", "stale") and p.get("fwd-status") == "200"
    assert "stored" in p
    r = s.get("/ttl")
    assert r.content == b"v2"
    assert_cs(r, "strata; hit; ttl=10")
    assert origin.count() == 2


def test_age_grows_with_the_clock(origin, strata):
    origin.route("/age", headers={"Cache-Control": "max-age=60"}, body=b"aged")
    s = strata()
    s.get("/age")
    r = s.get("/age")
    assert 0 <= int(r.headers["Age"]) <= 2
    assert_cs(r, "strata; hit; ttl=60")
    s.advance(10_000)
    r = s.get("/age")
    assert 10 <= int(r.headers["Age"]) <= 12
    assert_cs(r, "strata; hit; ttl=50")
    s.advance(20_000)
    r = s.get("/age")
    assert 30 <= int(r.headers["Age"]) <= 32
    assert_cs(r, "strata; hit; ttl=30")
    assert r.content == b"aged"
    assert origin.count() == 1


def test_age_from_origin_counts(origin, strata):
    origin.route("/oage", headers={"Cache-Control": "max-age=60", "Age": "20"}, body=b"x")
    s = strata()
    s.get("/oage")
    r = s.get("/oage")
    assert 20 <= int(r.headers["Age"]) <= 22
    assert_cs(r, "strata; hit; ttl=40")
    s.advance(41_000)
    s.get("/oage")
    assert origin.count() == 2


def test_origin_date_is_kept(origin, strata):
    date = http_date(time.time())
    origin.route("/date", headers={"Cache-Control": "max-age=60", "Date": date}, body=b"d")
    s = strata()
    assert s.get("/date").headers["Date"] == date
    s.advance(5_000)
    r = s.get("/date")
    assert r.headers["Date"] == date
    assert_cs(r, "strata; hit; ttl=55")


# ---- conditional requests from clients ------------------------------------------------------

def test_if_none_match_304_from_stored_object(origin, strata):
    origin.route("/inm", headers={"Cache-Control": "max-age=60", "ETag": '"v1"'},
                 body=b"body")
    s = strata()
    s.get("/inm")
    r = s.get("/inm", headers={"If-None-Match": '"v1"'})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["ETag"] == '"v1"'
    assert_cs(r, "strata; hit; ttl=60")
    r = s.get("/inm", headers={"If-None-Match": 'W/"v1"'})  # weak comparison
    assert r.status_code == 304
    r = s.get("/inm", headers={"If-None-Match": '"other", "v1"'})
    assert r.status_code == 304
    r = s.get("/inm", headers={"If-None-Match": '"other"'})
    assert (r.status_code, r.content) == (200, b"body")
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count() == 1


def test_if_modified_since_304_from_stored_object(origin, strata):
    origin.route("/ims", headers={"Cache-Control": "max-age=60", "Last-Modified": LM},
                 body=b"body")
    s = strata()
    s.get("/ims")
    for ims in (LM, LM_AFTER):
        r = s.get("/ims", headers={"If-Modified-Since": ims})
        assert r.status_code == 304 and r.content == b"", ims
        assert_cs(r, "strata; hit; ttl=60")
    r = s.get("/ims", headers={"If-Modified-Since": LM_BEFORE})
    assert (r.status_code, r.content) == (200, b"body")
    # If-None-Match takes precedence over If-Modified-Since
    origin.route("/both", headers={"Cache-Control": "max-age=60", "Last-Modified": LM,
                                   "ETag": '"e"'}, body=b"both")
    s.get("/both")
    r = s.get("/both", headers={"If-None-Match": '"nope"', "If-Modified-Since": LM})
    assert (r.status_code, r.content) == (200, b"both")
    assert origin.count() == 2


def test_conditional_headers_dropped_on_miss_and_answered_locally(origin, strata):
    origin.route("/cm", headers={"Cache-Control": "max-age=60", "ETag": '"v1"',
                                 "Last-Modified": LM}, body=b"full")
    s = strata()
    r = s.get("/cm", headers={"If-None-Match": '"v1"', "If-Modified-Since": LM})
    req = origin.last("/cm")
    assert "If-None-Match" not in req.headers and "If-Modified-Since" not in req.headers
    assert r.status_code == 304 and r.content == b""
    assert_cs(r, STORED)
    r = s.get("/cm")
    assert (r.status_code, r.content) == (200, b"full")
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count() == 1


# ---- revalidation upstream -----------------------------------------------------------------

def test_revalidation_304_freshens_the_stored_response(origin, strata):
    h = validating()
    origin.route("/rv", handler=h)
    s = strata()
    assert_cs(s.get("/rv"), STORED)
    s.advance(11_000)
    r = s.get("/rv")
    assert (r.status_code, r.content) == (200, b"the body")
    assert r.headers["ETag"] == '"v1"'
    assert_cs(r, "strata; fwd=stale; fwd-status=304")
    req = origin.last("/rv")
    assert req.headers.get("If-None-Match") == '"v1"'
    assert req.headers.get("If-Modified-Since") in (LM, None)
    assert origin.count("/rv") == 2
    r = s.get("/rv")  # freshened: a hit again
    assert (r.status_code, r.content) == (200, b"the body")
    assert_cs(r, "strata; hit; ttl=10")
    assert origin.count("/rv") == 2


def test_revalidation_takes_headers_from_the_304(origin, strata):
    h = validating(on304={"Cache-Control": "max-age=100", "X-Version": "2"})
    origin.route("/rh", handler=h)
    s = strata()
    r = s.get("/rh")
    assert "X-Version" not in r.headers
    s.advance(11_000)
    r = s.get("/rh")
    assert_cs(r, "strata; fwd=stale; fwd-status=304")
    assert r.headers["X-Version"] == "2" and r.content == b"the body"
    r = s.get("/rh")
    assert_cs(r, "strata; hit; ttl=100")
    assert r.headers["X-Version"] == "2" and r.content == b"the body"
    assert r.headers["Cache-Control"] == "max-age=100"
    assert origin.count() == 2


def test_revalidation_with_last_modified_only(origin, strata):
    origin.route("/rlm", handler=validating(etag=None))
    s = strata()
    s.get("/rlm")
    s.advance(11_000)
    r = s.get("/rlm")
    assert (r.status_code, r.content) == (200, b"the body")
    assert_cs(r, "strata; fwd=stale; fwd-status=304")
    req = origin.last("/rlm")
    assert req.headers.get("If-Modified-Since") == LM and "If-None-Match" not in req.headers


def test_revalidation_answered_200_replaces_the_object(origin, strata):
    h = validating()
    origin.route("/r200", handler=h)
    s = strata()
    s.get("/r200")
    s.advance(11_000)
    h.state["changed"] = (200, {"Cache-Control": "max-age=30", "ETag": '"v2"'}, b"new body")
    r = s.get("/r200")
    assert (r.status_code, r.content) == (200, b"new body")
    p = cs_params(cache_status(r))
    assert p.get("fwd-status") == "200" and "stored" in p
    r = s.get("/r200")
    assert (r.content, r.headers["ETag"]) == (b"new body", '"v2"')
    assert_cs(r, "strata; hit; ttl=30")
    assert origin.count() == 2


def test_revalidation_uses_strata_validators_not_the_clients(origin, strata):
    origin.route("/rc", handler=validating())
    s = strata()
    s.get("/rc")
    s.advance(11_000)
    r = s.get("/rc", headers={"If-None-Match": '"client-etag"'})
    assert origin.last("/rc").headers.get("If-None-Match") == '"v1"'
    assert (r.status_code, r.content) == (200, b"the body")
    s.advance(11_000)
    r = s.get("/rc", headers={"If-None-Match": '"v1"'})
    assert origin.last("/rc").headers.get("If-None-Match") == '"v1"'
    assert r.status_code == 304 and r.content == b""
    assert origin.count() == 3


def test_no_cache_response_is_revalidated_every_time(origin, strata):
    origin.route("/nc", handler=validating(cc="no-cache, max-age=60"))
    s = strata()
    r = s.get("/nc")
    assert r.content == b"the body"
    for n in (2, 3):
        r = s.get("/nc")
        assert (r.status_code, r.content) == (200, b"the body")
        assert cs_params(cache_status(r)).get("fwd-status") == "304"
        assert origin.last("/nc").headers.get("If-None-Match") == '"v1"'
        assert origin.count("/nc") == n


def test_must_revalidate_is_not_served_stale_by_route_swr(origin, strata):
    origin.route("/mr", handler=validating(cc="max-age=10, must-revalidate"))
    s = strata(routes=[{"path": "/mr", "stale_while_revalidate": "60s"}])
    s.get("/mr")
    s.advance(11_000)
    r = s.get("/mr")
    assert (r.status_code, r.content) == (200, b"the body")
    assert_cs(r, "strata; fwd=stale; fwd-status=304")
    assert origin.count() == 2  # revalidated before answering, not in the background


def test_must_revalidate_is_not_served_stale_on_error(origin, strata):
    origin.route("/mre", headers={"Cache-Control": "max-age=10, must-revalidate",
                                  "ETag": '"m"'}, body=b"stale body")
    s = strata(routes=[{"path": "/mre", "stale_if_error": "60s"}])
    s.get("/mre")
    s.advance(11_000)
    origin.route("/mre", status=500, body=b"boom")
    r = s.get("/mre")
    assert r.status_code >= 500 and r.content != b"stale body"
    assert origin.count() == 2


def test_stale_object_with_validators_kept_for_revalidation(origin, strata):
    origin.route("/keep", handler=validating())
    s = strata()  # http_cache.keep defaults to 1h
    s.get("/keep")
    s.advance(30 * 60_000)
    r = s.get("/keep")
    assert_cs(r, "strata; fwd=stale; fwd-status=304")
    assert origin.last("/keep").headers.get("If-None-Match") == '"v1"'


def test_keep_bounds_how_long_stale_objects_stay(origin, strata):
    origin.route("/keep", handler=validating())
    s = strata(http_cache={"keep": "1m"})
    s.get("/keep")
    s.advance(10_000 + 120_000)
    r = s.get("/keep")
    assert (r.status_code, r.content) == (200, b"the body")
    assert "If-None-Match" not in origin.last("/keep").headers
    assert_cs(r, STORED)
