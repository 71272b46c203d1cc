"""X-Request-Id on the proxy: every response carries one; a client's valid
id (1-36 bytes of [A-Za-z0-9._-]) is kept, echoed and forwarded to the
origin; anything else is replaced by strata's own; a stored response never
replays the id of the request that stored it; the access log line carries
the same id."""
import re

import pytest

from proxyutil import cache_status, cs_params, parse_logfmt, wait_until

ID_RE = re.compile(r"[A-Za-z0-9._-]{1,36}")
CC60 = {"Cache-Control": "max-age=60"}
ROUTES = [{"name": "off", "path": "/nc/*", "cache": False}]


def one_id(resp):
    """The response's single X-Request-Id (a RawResponse: counts them)."""
    ids = resp.get_all("X-Request-Id")
    assert len(ids) == 1, "expected one X-Request-Id, got %r (status %d)" % (
        ids, resp.status_code)
    assert ID_RE.fullmatch(ids[0]), "not a valid request id: %r" % ids[0]
    return ids[0]


def origin_ids(req):
    return req.headers.get_all("X-Request-Id")


def _params(resp):
    return cs_params(cache_status(resp))


def test_every_proxy_response_has_a_request_id(origin, strata):
    origin.route("/r/c", headers={**CC60, "ETag": '"v1"'}, body=b"cached")
    origin.route("/r/post", method="POST", body=b"posted")
    origin.route("/nc/b", headers=CC60, body=b"bypassed")
    origin.route("/r/ns", headers={"Cache-Control": "no-store"}, body=b"ns")
    s = strata(routes=ROUTES)
    seen = []

    def check(resp, what):
        i = one_id(resp)
        seen.append((what, i))
        return resp

    r = check(s.raw("GET", "/r/c"), "miss")
    assert "stored" in _params(r)
    r = check(s.raw("GET", "/r/c"), "hit")
    assert "hit" in _params(r)
    r = check(s.raw("HEAD", "/r/c"), "head hit")
    assert r.status_code == 200
    r = check(s.raw("GET", "/r/c", [("If-None-Match", '"v1"')]), "304")
    assert r.status_code == 304
    r = check(s.raw("GET", "/r/c", [("Range", "bytes=0-1")]), "206")
    assert r.status_code == 206
    r = check(s.raw("POST", "/r/post", body=b"x"), "pass")
    assert r.status_code == 200 and "fwd" in _params(r)
    r = check(s.raw("GET", "/nc/b"), "bypass")
    assert _params(r).get("fwd") == "bypass"
    r = check(s.raw("GET", "/r/ns"), "not stored")
    assert r.content == b"ns"
    r = check(s.raw("GET", "/r/missing"), "origin 404")
    assert r.status_code == 404
    r = check(s.raw("PURGE", "/r/c"), "purge")
    assert r.status_code == 200
    r = check(s.raw("GET", "/r/c"), "miss after purge")
    assert "stored" in _params(r)
    ids = [i for _, i in seen]
    assert len(set(ids)) == len(ids), seen


def test_origin_down_502_has_a_request_id(origin, strata):
    (closed,) = strata.ports(1)
    s = strata(upstream="http://127.0.0.1:%d" % closed)
    r = s.raw("GET", "/down", [("X-Request-Id", "down-1")])
    assert r.status_code == 502
    assert one_id(r) == "down-1"
    r = s.raw("GET", "/down")
    assert r.status_code == 502
    assert one_id(r) != "down-1"


def test_strata_400_has_a_request_id(origin, strata):
    s = strata()
    r = s.raw("GET", "/two-hosts", [("Host", "a.example"), ("Host", "b.example")], host=None)
    assert r.status_code == 400
    one_id(r)
    assert origin.count() == 0


def test_purge_forbidden_has_a_request_id(origin, strata):
    s = strata(http_cache={"purge": {"allow": ["10.0.0.0/8"]}})
    r = s.raw("PURGE", "/x", [("X-Request-Id", "purge-403")])
    assert r.status_code == 403
    assert one_id(r) == "purge-403"


def test_two_requests_get_different_ids(origin, strata):
    origin.route("/r/same", headers=CC60, body=b"x")
    s = strata()
    ids = [one_id(s.raw("GET", "/r/same")) for _ in range(20)]
    assert len(set(ids)) == 20, ids
    # on one keep-alive connection too
    with s.conn() as c:
        more = []
        for _ in range(5):
            c.request("GET", "/r/same", host=s.host)
            more.append(one_id(c.read_response()))
    assert len(set(ids + more)) == 25, more


@pytest.mark.parametrize("rid", ["abc-123", "A.b_c-9", "x" * 36, "0"])
def test_client_id_is_echoed_and_forwarded(origin, strata, rid):
    origin.route("/r/fw", headers=CC60, body=b"x")
    origin.route("/r/fwpost", method="POST", body=b"ok")
    s = strata()
    r = s.raw("GET", "/r/fw", [("X-Request-Id", rid)])
    assert "stored" in _params(r)
    assert one_id(r) == rid
    assert origin_ids(origin.last("/r/fw")) == [rid]
    r = s.raw("GET", "/r/fw", [("X-Request-Id", rid)])  # a hit echoes it too
    assert "hit" in _params(r)
    assert one_id(r) == rid
    r = s.raw("POST", "/r/fwpost", [("X-Request-Id", rid)], body=b"a")
    assert one_id(r) == rid
    assert origin_ids(origin.last("/r/fwpost")) == [rid]


def test_without_client_id_the_origin_sees_strata_id(origin, strata):
    origin.route("/r/own", headers=CC60, body=b"x")
    s = strata()
    r = s.raw("GET", "/r/own")
    assert origin_ids(origin.last("/r/own")) == [one_id(r)]


INVALID = ["x" * 37, "a" * 100, "has space", 'q"uote', "a,b", "a=b", "semi;colon",
           "back\\slash", "sl/ash", "\xe9t\xe9"]


@pytest.mark.parametrize("rid", INVALID)
def test_invalid_client_id_is_replaced(origin, strata, rid):
    origin.route("/r/inv", headers=CC60, body=b"x")
    s = strata()
    r = s.raw("GET", "/r/inv", [("X-Request-Id", rid)])
    assert r.status_code == 200
    got = one_id(r)
    assert got != rid


@pytest.mark.parametrize("rid", INVALID)
def test_invalid_client_id_is_not_forwarded(origin, strata, rid):
    """The origin sees the id strata answered with and logged, not the
    client's invalid one (which could be anything: 100 bytes, quotes...)."""
    origin.route("/r/invfw", headers=CC60, body=b"x")
    s = strata()
    r = s.raw("GET", "/r/invfw", [("X-Request-Id", rid)])
    got = one_id(r)
    assert origin_ids(origin.last("/r/invfw")) == [got]


def test_stored_response_does_not_replay_the_origin_id(origin, strata):
    origin.route("/r/orid", headers={**CC60, "X-Request-Id": "origin-id-1"}, body=b"x")
    s = strata()
    miss = s.raw("GET", "/r/orid")
    assert "stored" in _params(miss)
    miss_id = one_id(miss)
    assert miss_id != "origin-id-1"
    assert origin_ids(origin.last("/r/orid")) == [miss_id]
    hit = s.raw("GET", "/r/orid")
    assert "hit" in _params(hit)
    hit_id = one_id(hit)
    assert hit_id not in ("origin-id-1", miss_id)
    hit2 = s.raw("GET", "/r/orid", [("X-Request-Id", "cli-9")])
    assert one_id(hit2) == "cli-9"
    # the same for a stored response to a client that gave its own id
    origin.route("/r/orid2", headers={**CC60, "X-Request-Id": "origin-id-2"}, body=b"y")
    first = s.raw("GET", "/r/orid2", [("X-Request-Id", "first-client")])
    assert one_id(first) == "first-client"
    again = s.raw("GET", "/r/orid2")
    assert "hit" in _params(again)
    assert one_id(again) not in ("first-client", "origin-id-2")
    assert origin.count() == 2


def test_passed_response_carries_the_request_id_not_the_origin_id(origin, strata):
    origin.route("/r/pid", method="POST", headers={"X-Request-Id": "origin-post"}, body=b"ok")
    origin.route("/r/nsid", headers={"Cache-Control": "no-store", "X-Request-Id": "origin-ns"},
                 body=b"ns")
    s = strata()
    r = s.raw("POST", "/r/pid", [("X-Request-Id", "post-1")], body=b"a")
    assert one_id(r) == "post-1"
    r = s.raw("GET", "/r/nsid")
    got = one_id(r)
    assert got != "origin-ns"
    assert origin_ids(origin.last("/r/nsid")) == [got]


def test_access_log_request_id_matches_the_header(origin, strata):
    origin.route("/r/log?a=1", headers=CC60, body=b"x")
    origin.route("/r/log?a=2", headers=CC60, body=b"y")
    origin.route("/r/logpost", method="POST", body=b"ok")
    s = strata()
    sent = []
    sent.append(("/r/log?a=1", one_id(s.raw("GET", "/r/log?a=1", [("X-Request-Id",
                                                                     "log-id-1")]))))
    sent.append(("/r/log?a=2", one_id(s.raw("GET", "/r/log?a=2"))))
    sent.append(("/r/log?a=2", one_id(s.raw("GET", "/r/log?a=2"))))  # a hit
    sent.append(("/r/logpost", one_id(s.raw("POST", "/r/logpost", body=b"a"))))
    sent.append(("/r/log?a=1", one_id(s.raw("GET", "/r/log?a=1",
                                             [("X-Request-Id", "x" * 40)]))))
    assert sent[0][1] == "log-id-1"
    lines = wait_until(lambda: len(s.access_log_lines()) >= len(sent) and s.access_log_lines(),
                       10, msg="%d access log lines" % len(sent))
    assert len(lines) == len(sent), lines
    recs = [parse_logfmt(ln) for ln in lines]
    by_id = {}
    for rec in recs:
        assert "request_id" in rec, rec
        assert rec["request_id"] not in by_id, "two lines with request_id %s" % rec["request_id"]
        by_id[rec["request_id"]] = rec
    for path, rid in sent:
        assert rid in by_id, "no access log line with request_id=%s (%s): %r" % (rid, path, lines)
        assert by_id[rid]["path"] == path, (rid, by_id[rid])
    assert "x" * 40 not in "\n".join(lines)
