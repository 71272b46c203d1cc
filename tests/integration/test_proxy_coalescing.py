"""strata serve: request coalescing (one upstream fetch per key, the others
wait and look up again), `collapsed`, hit-for-miss.

The origin holds its answer behind a gate until every other client request
waits inside strata for the first one's fetch: strata (started with
STRATA_TEST_CLOCK=1) reports that count at GET /_strata/debug/flights. Without
coalescing the count never gets there and the wait fails."""
import threading

from proxyutil import assert_cs, cache_status, cs_params, numbered, wait_waiters

N = 10


def _fire(s, path, n, headers_for=lambda i: {}):
    """Send n requests on n connections at once; returns the RawConns."""
    conns = []
    for i in range(n):
        c = s.conn(timeout=20)
        c.request("GET", path, headers=headers_for(i), host=s.host)
        conns.append(c)
    return conns


def _read_all(conns):
    out = []
    for c in conns:
        out.append(c.read_response())
        c.close()
    return out


def test_concurrent_misses_make_one_origin_request(origin, strata):
    gate = origin.gate("/co")
    origin.route("/co", handler=numbered(headers={"Cache-Control": "max-age=60"}), gate=gate)
    s = strata()
    conns = _fire(s, "/co", N)
    gate.wait_waiting(1)
    wait_waiters(s, N - 1)
    assert origin.count("/co") == 1, "requests were not coalesced"
    gate.release()
    rs = _read_all(conns)
    assert [r.status_code for r in rs] == [200] * N
    assert [r.content for r in rs] == [b"v1"] * N
    members = [cache_status(r) for r in rs]
    collapsed = [m for m in members if "collapsed" in cs_params(m)]
    assert len(collapsed) == N - 1, members
    assert sum(1 for m in members if "stored" in cs_params(m)) >= 1
    assert origin.count("/co") == 1
    assert_cs(s.get("/co"), "strata; hit; ttl=60")
    assert origin.count("/co") == 1


def test_different_keys_are_not_coalesced(origin, strata):
    gate = origin.gate("/k1")
    origin.route("/k1", headers={"Cache-Control": "max-age=60"}, body=b"1", gate=gate)
    origin.route("/k2", headers={"Cache-Control": "max-age=60"}, body=b"2", gate=gate)
    s = strata()
    c1 = _fire(s, "/k1", 1)
    c2 = _fire(s, "/k2", 1)
    gate.wait_waiting(2)
    gate.release()
    assert [r.content for r in _read_all(c1 + c2)] == [b"1", b"2"]
    assert origin.count() == 2


def test_non_storable_response_is_not_handed_to_waiters(origin, strata):
    gate = origin.gate("/priv")
    origin.route("/priv", handler=numbered(headers={"Cache-Control": "private, max-age=60"}),
                 gate=gate)
    s = strata()
    n = 4
    conns = _fire(s, "/priv", n)
    gate.wait_waiting(1)
    wait_waiters(s, n - 1)
    assert origin.count("/priv") == 1
    gate.release()
    rs = _read_all(conns)
    bodies = [r.content for r in rs]
    assert sorted(bodies) == sorted(b"v%d" % i for i in range(1, n + 1)), bodies
    assert origin.count("/priv") == n
    for r in rs:
        assert "hit" not in cs_params(cache_status(r))


def test_vary_mismatch_is_not_handed_to_waiters(origin, strata):
    def h(req):
        return 200, {"Cache-Control": "max-age=60", "Vary": "Accept-Language"}, \
            ("lang=%s" % req.headers.get("Accept-Language")).encode()
    gate = origin.gate("/vy")
    origin.route("/vy", handler=h, gate=gate)
    s = strata()
    c_en = _fire(s, "/vy", 1, lambda i: {"Accept-Language": "en"})
    gate.wait_waiting(1)
    c_fr = _fire(s, "/vy", 1, lambda i: {"Accept-Language": "fr"})
    wait_waiters(s, 1)
    gate.release()
    r_en, r_fr = _read_all(c_en + c_fr)
    assert r_en.content == b"lang=en"
    assert r_fr.content == b"lang=fr"
    assert origin.count("/vy") == 2
    assert [q.headers.get("Accept-Language") for q in origin.matching("/vy")] == ["en", "fr"]


def test_head_and_get_share_one_fetch(origin, strata):
    gate = origin.gate("/hg")
    origin.route("/hg", headers={"Cache-Control": "max-age=60"}, body=b"body", gate=gate)
    s = strata()
    c_get = s.conn(timeout=20)
    c_get.request("GET", "/hg", host=s.host)
    gate.wait_waiting(1)
    c_head = s.conn(timeout=20)
    c_head.request("HEAD", "/hg", host=s.host)
    wait_waiters(s, 1)
    gate.release()
    r_get = c_get.read_response()
    r_head = c_head.read_response("HEAD")
    assert (r_get.status_code, r_get.content) == (200, b"body")
    assert (r_head.status_code, r_head.content) == (200, b"")
    assert r_head.headers["Content-Length"] == "4"
    assert origin.count() == 1
    c_get.close()
    c_head.close()


def test_hit_for_miss_sends_requests_straight_to_origin(origin, strata):
    origin.route("/hfm", handler=numbered(headers={"Cache-Control": "private"}))
    s = strata()
    r = s.get("/hfm")
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=200; detail=private")
    # the marker is in place: concurrent requests all reach the origin at once
    gate = origin.gate("/hfm")
    conns = _fire(s, "/hfm", 3)
    gate.wait_waiting(3)
    gate.release()
    rs = _read_all(conns)
    for r in rs:
        assert_cs(r, "strata; fwd=bypass")
    assert sorted(r.content for r in rs) == [b"v2", b"v3", b"v4"]
    assert origin.count("/hfm") == 4


def test_hit_for_miss_marker_lasts_10_seconds(origin, strata):
    origin.route("/hfm10", handler=numbered(headers={"Cache-Control": "no-store"}))
    s = strata()
    assert_cs(s.get("/hfm10"), "strata; fwd=uri-miss; fwd-status=200; detail=no-store")
    s.advance(9_000)
    assert_cs(s.get("/hfm10"), "strata; fwd=bypass")
    s.advance(2_000)
    r = s.get("/hfm10")
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=200; detail=no-store")
    assert r.content == b"v3"
    assert origin.count() == 3


def test_collapsed_waiters_share_an_origin_error(origin, strata):
    gate = origin.gate("/err")
    origin.route("/err", status=503, body=b"down", gate=gate)
    s = strata()
    conns = _fire(s, "/err", 3)
    gate.wait_waiting(1)
    wait_waiters(s, 2)
    gate.release()
    rs = _read_all(conns)
    assert all(r.status_code == 503 for r in rs)
    # a 503 is not storable: the waiters look up again and may go to the
    # origin themselves, but never more than once each
    assert 1 <= origin.count("/err") <= 3


def test_threads_with_requests_library(origin, strata):
    gate = origin.gate("/thr")
    origin.route("/thr", handler=numbered(headers={"Cache-Control": "max-age=60"}), gate=gate)
    s = strata()
    out = []
    lock = threading.Lock()

    def client():
        r = s.get("/thr")
        with lock:
            out.append(r)

    ts = [threading.Thread(target=client) for _ in range(N)]
    for t in ts:
        t.start()
    gate.wait_waiting(1)
    wait_waiters(s, N - 1)
    gate.release()
    for t in ts:
        t.join(20)
    assert len(out) == N and all(r.content == b"v1" for r in out)
    assert origin.count("/thr") == 1
