"""GET /metrics on the admin listener: Prometheus text format 0.0.4, parsed
with prometheus_client's own parser; counters and histograms move as the
proxy and the caches work; labels never carry a key, a URL or a user."""
import hashlib
import hmac
import math
import re

from prometheus_client.parser import text_string_to_metric_families

from proxyutil import (ADMIN_TOKEN, USER_SECRET, RawConn, cache_status, cs_params,
                       wait_until, wait_waiters)

CC60 = {"Cache-Control": "max-age=60"}
CACHES = ("default", "session", "static", "http")
OPS = ("get", "set", "delete", "get_or_set", "invalidate")
RESULTS = {"hit", "miss", "stale", "revalidated", "bypass", "pass", "purge", "error"}
ROUTES = [
    {"name": "m", "path": "/m/*"},
    {"name": "off", "path": "/off/*", "cache": False},
    {"name": "me", "path": "/me/*", "per_user": True, "user_from": "header:Authorization"},
]


# ---- helpers --------------------------------------------------------------------------

def scrape(s):
    """(text, {(sample name, frozenset(labels)): value}, families)."""
    r = s.admin_get("/metrics")
    assert r.status_code == 200, (r.status_code, r.text[:500])
    text = r.text
    fams = list(text_string_to_metric_families(text))
    samples = {}
    for f in fams:
        for smp in f.samples:
            k = (smp.name, frozenset(smp.labels.items()))
            assert k not in samples, "duplicate series %s %r" % (smp.name, smp.labels)
            samples[k] = smp.value
    return text, samples, fams


def val(samples, name, **labels):
    k = (name, frozenset(labels.items()))
    assert k in samples, "no series %s%r; series of that name: %r" % (
        name, labels, [dict(l) for (n, l) in samples if n == name][:20])
    return samples[k]


def wait_val(s, name, want, **labels):
    """Poll (bounded) until the series equals `want` (a request is counted
    when it ends, which may be just after the client got its response)."""
    box = {}

    def ok():
        box["v"] = val(scrape(s)[1], name, **labels)
        return box["v"] == want
    try:
        wait_until(ok, 10, msg="%s%r == %r" % (name, labels, want))
    except AssertionError:
        raise AssertionError("%s%r is %r, expected %r" % (name, labels, box.get("v"), want))
    return box["v"]


def _hit(r):
    return "hit" in cs_params(cache_status(r))


def type_lines(text):
    """{family name: type} from the # TYPE lines, checking each has a # HELP
    line just before it."""
    lines = text.splitlines()
    types = {}
    for i, ln in enumerate(lines):
        if ln.startswith("# TYPE "):
            parts = ln.split()
            assert len(parts) == 4, ln
            name, typ = parts[2], parts[3]
            assert name not in types, "two TYPE lines for %s" % name
            types[name] = typ
            assert i > 0 and lines[i - 1].startswith("# HELP %s " % name), \
                "no HELP line before %r" % ln
            assert len(lines[i - 1]) > len("# HELP %s " % name), "empty HELP for %s" % name
    return types


# ---- format ---------------------------------------------------------------------------

def test_metrics_content_type_and_format(origin, strata):
    origin.route("/m/1", headers=CC60, body=b"x")
    s = strata(routes=ROUTES)
    s.get("/m/1")
    s.get("/m/1")
    r = s.admin_get("/metrics")
    assert r.status_code == 200
    ct = r.headers["Content-Type"]
    assert re.match(r"text/plain; ?version=0\.0\.4(;|$)", ct), ct
    assert r.headers.get("X-Request-Id")
    text = r.text
    assert text.endswith("\n")
    types = type_lines(text)
    assert types, "no TYPE lines"
    fams = list(text_string_to_metric_families(text))
    assert fams
    for f in fams:
        assert f.documentation, "family %s has no HELP" % f.name
        assert f.type in ("counter", "gauge", "histogram"), (f.name, f.type)
        assert f.samples, "family %s has no samples" % f.name
    for name, typ in types.items():
        assert re.fullmatch(r"strata_[a-z0-9_]+", name), name
        if typ == "counter":
            assert name.endswith("_total"), "counter %s does not end in _total" % name
        else:
            assert not name.endswith("_total"), "%s %s ends in _total" % (typ, name)
        if typ == "histogram":
            assert name.endswith("_seconds"), "histogram %s does not end in _seconds" % name
    # every sample line belongs to a family announced by TYPE, in its block
    current = None
    for ln in text.splitlines():
        if ln.startswith("# TYPE "):
            current = ln.split()[2]
            continue
        if not ln or ln.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$", ln)
        assert m, "not a sample line: %r" % ln
        name = m.group(1)
        allowed = {current}
        if types.get(current) == "histogram":
            allowed = {current + "_bucket", current + "_sum", current + "_count"}
        assert name in allowed, "sample %s outside its family block (%s)" % (name, current)
        v = float(m.group(3))
        assert math.isfinite(v) and v >= 0, ln
    # the families the admin API documents
    for name in ("strata_cache_hits_total", "strata_cache_misses_total",
                 "strata_http_requests_total", "strata_http_request_duration_seconds",
                 "strata_upstream_requests_total", "strata_upstream_errors_total",
                 "strata_http_coalesced_requests_total", "strata_cache_op_duration_seconds",
                 "strata_cache_info", "strata_cache_invalidations_total"):
        assert name in types, "no family %s" % name
    assert types["strata_http_request_duration_seconds"] == "histogram"
    assert types["strata_cache_op_duration_seconds"] == "histogram"


def test_histograms_are_cumulative_and_end_in_inf(origin, strata):
    origin.route("/m/1", headers=CC60, body=b"x")
    origin.route("/m/2", body=b"y")
    s = strata(routes=ROUTES)
    for p in ("/m/1", "/m/1", "/m/2", "/off/x", "/none"):
        s.get(p)
    _, _, fams = scrape(s)
    hists = [f for f in fams if f.type == "histogram"]
    assert {f.name for f in hists} >= {"strata_http_request_duration_seconds",
                                       "strata_cache_op_duration_seconds",
                                       "strata_upstream_duration_seconds"}
    nonzero = 0
    for f in hists:
        series = {}
        for smp in f.samples:
            labels = dict(smp.labels)
            le = labels.pop("le", None)
            key = frozenset(labels.items())
            d = series.setdefault(key, {"buckets": [], "count": None, "sum": None})
            if smp.name == f.name + "_bucket":
                assert le is not None, smp
                d["buckets"].append((float(le), smp.value))
            elif smp.name == f.name + "_count":
                d["count"] = smp.value
            elif smp.name == f.name + "_sum":
                d["sum"] = smp.value
            else:
                raise AssertionError("unexpected sample %s in %s" % (smp.name, f.name))
        assert series, f.name
        for key, d in series.items():
            where = "%s%r" % (f.name, dict(key))
            b = d["buckets"]
            assert len(b) >= 2, where
            les = [x[0] for x in b]
            assert les == sorted(les) and len(set(les)) == len(les), (where, les)
            assert les[-1] == math.inf, "%s: last bucket is not +Inf" % where
            counts = [x[1] for x in b]
            assert all(a <= c for a, c in zip(counts, counts[1:])), \
                "%s: buckets not cumulative: %r" % (where, counts)
            assert d["count"] is not None and d["sum"] is not None, where
            assert counts[-1] == d["count"], "%s: +Inf %r != _count %r" % (
                where, counts[-1], d["count"])
            assert d["sum"] >= 0
            if d["count"] > 0:
                nonzero += 1
                assert d["sum"] > 0, "%s: %d observations summing to 0" % (where, d["count"])
    assert nonzero >= 3


# ---- counters move -----------------------------------------------------------------------

def test_http_counters_move(origin, strata):
    origin.route("/m/1", headers=CC60, body=b"x")
    s = strata(routes=ROUTES)
    _, smp, _ = scrape(s)
    for res in RESULTS:
        assert val(smp, "strata_http_requests_total", route="m", cache_result=res) == 0
    hits0 = val(smp, "strata_cache_hits_total", cache="http")
    assert val(smp, "strata_upstream_requests_total", route="m") == 0
    assert val(smp, "strata_http_request_duration_seconds_count", route="m") == 0

    assert not _hit(s.get("/m/1"))
    wait_val(s, "strata_http_requests_total", 1, route="m", cache_result="miss")
    _, smp, _ = scrape(s)
    assert val(smp, "strata_http_requests_total", route="m", cache_result="hit") == 0
    assert val(smp, "strata_upstream_requests_total", route="m") == 1
    assert val(smp, "strata_upstream_duration_seconds_count", route="m") == 1
    assert val(smp, "strata_upstream_duration_seconds_sum", route="m") > 0
    assert val(smp, "strata_http_request_duration_seconds_count", route="m") == 1
    assert val(smp, "strata_cache_sets_total", cache="http") == 1
    assert val(smp, "strata_cache_items", cache="http") == 1
    hits1 = val(smp, "strata_cache_hits_total", cache="http")

    assert _hit(s.get("/m/1"))
    wait_val(s, "strata_http_requests_total", 1, route="m", cache_result="hit")
    _, smp, _ = scrape(s)
    assert val(smp, "strata_http_requests_total", route="m", cache_result="miss") == 1
    assert val(smp, "strata_cache_hits_total", cache="http") == hits1 + 1
    assert hits1 >= hits0
    assert val(smp, "strata_upstream_requests_total", route="m") == 1  # a hit: no origin
    assert val(smp, "strata_http_request_duration_seconds_count", route="m") == 2
    assert val(smp, "strata_http_request_duration_seconds_sum", route="m") > 0
    # other routes did not move
    for route in ("off", "me", "(none)"):
        assert val(smp, "strata_http_request_duration_seconds_count", route=route) == 0


def test_unmatched_bypass_and_pass_results(origin, strata):
    origin.route("/other", headers=CC60, body=b"x")
    origin.route("/off/x", headers=CC60, body=b"x")
    origin.route("/m/post", method="POST", body=b"ok")
    s = strata(routes=ROUTES)
    s.get("/other")
    s.get("/off/x")
    s.post("/m/post", data=b"a")
    wait_val(s, "strata_http_requests_total", 1, route="(none)", cache_result="miss")
    wait_val(s, "strata_http_requests_total", 1, route="off", cache_result="bypass")
    wait_val(s, "strata_http_requests_total", 1, route="m", cache_result="pass")


def test_kv_counters_and_gauges(origin, strata):
    s = strata()
    _, smp, _ = scrape(s)
    assert val(smp, "strata_cache_items", cache="default") == 0
    assert val(smp, "strata_cache_max_bytes", cache="default") == 256 << 20
    assert val(smp, "strata_cache_max_bytes", cache="session") == 64 << 20
    b0 = val(smp, "strata_cache_bytes", cache="default")
    r = s.admin_request("PUT", "/_strata/caches/default/keys/k1", data=b"v" * 1000)
    assert r.status_code == 200
    assert s.admin_get("/_strata/caches/default/keys/k1").status_code == 200
    assert s.admin_get("/_strata/caches/default/keys/nope").status_code == 404
    _, smp, _ = scrape(s)
    assert val(smp, "strata_cache_items", cache="default") == 1
    assert val(smp, "strata_cache_bytes", cache="default") >= b0 + 1000
    assert val(smp, "strata_cache_sets_total", cache="default") == 1
    assert val(smp, "strata_cache_hits_total", cache="default") == 1
    assert val(smp, "strata_cache_misses_total", cache="default") == 1
    assert val(smp, "strata_cache_sets_total", cache="session") == 0
    assert s.admin_request("DELETE", "/_strata/caches/default/keys/k1").status_code == 200
    _, smp, _ = scrape(s)
    assert val(smp, "strata_cache_deletes_total", cache="default") == 1
    assert val(smp, "strata_cache_items", cache="default") == 0


def test_expirations_counted(origin, strata):
    s = strata()
    r = s.admin_request("PUT", "/_strata/caches/default/keys/e?ttl=5s", data=b"v")
    assert r.status_code == 200
    s.advance(6000)
    assert s.admin_get("/_strata/caches/default/keys/e").status_code == 404
    _, smp, _ = scrape(s)
    assert val(smp, "strata_cache_expirations_total", cache="default") == 1


def test_invalidations_counted_by_kind(origin, strata):
    origin.route("/m/t", headers={**CC60, "Surrogate-Key": "t1"}, body=b"x")
    s = strata(routes=ROUTES)
    s.get("/m/t")
    _, smp, _ = scrape(s)
    for c in CACHES:
        for kind in ("key", "pattern", "tag", "all"):
            assert val(smp, "strata_cache_invalidations_total", cache=c, kind=kind) == 0
    inv0 = val(smp, "strata_cache_invalidated_total", cache="http")

    s.invalidate(cache="http", tags=["t1"])
    _, smp, _ = scrape(s)
    assert val(smp, "strata_cache_invalidations_total", cache="http", kind="tag") == 1
    assert val(smp, "strata_cache_invalidations_total", cache="default", kind="tag") == 0
    assert not _hit(s.get("/m/t"))

    s.invalidate(cache="default", patterns=["x*"])
    s.invalidate(cache="default", keys=["k"])
    s.invalidate(cache="session", all=True)
    _, smp, _ = scrape(s)
    assert val(smp, "strata_cache_invalidations_total", cache="default", kind="pattern") == 1
    assert val(smp, "strata_cache_invalidations_total", cache="default", kind="key") == 1
    assert val(smp, "strata_cache_invalidations_total", cache="session", kind="all") == 1
    assert val(smp, "strata_cache_invalidations_total", cache="http", kind="pattern") == 0

    # a URL invalidation is an O(1) tag bump; a URL pattern is a pattern
    s.invalidate(urls=["/m/t"])
    s.invalidate(url_patterns=["/m/*"])
    _, smp, _ = scrape(s)
    assert val(smp, "strata_cache_invalidations_total", cache="http", kind="tag") == 2
    assert val(smp, "strata_cache_invalidations_total", cache="http", kind="pattern") == 1
    assert val(smp, "strata_cache_invalidated_total", cache="http") >= inv0


def test_upstream_connect_errors(origin, strata):
    (closed,) = strata.ports(1)
    s = strata(routes=ROUTES, upstream="http://127.0.0.1:%d" % closed)
    _, smp, _ = scrape(s)
    for kind in ("connect", "timeout", "broken"):
        assert val(smp, "strata_upstream_errors_total", kind=kind) == 0
    r = s.get("/m/down")
    assert r.status_code == 502
    wait_until(lambda: val(scrape(s)[1], "strata_upstream_errors_total", kind="connect") >= 1,
               10, msg="a connect error counted")
    _, smp, _ = scrape(s)
    assert val(smp, "strata_upstream_errors_total", kind="connect") == 1
    assert val(smp, "strata_upstream_errors_total", kind="timeout") == 0
    assert val(smp, "strata_upstream_errors_total", kind="broken") == 0
    # no response head came back: not an upstream request
    assert val(smp, "strata_upstream_requests_total", route="m") == 0


def test_upstream_error_when_the_origin_stops(origin, strata):
    origin.route("/m/up", body=b"x")
    s = strata(routes=ROUTES)
    assert s.get("/m/up").status_code == 200
    origin.stop()
    assert s.get("/m/up").status_code == 502
    wait_until(lambda: val(scrape(s)[1], "strata_upstream_errors_total", kind="connect")
               + val(scrape(s)[1], "strata_upstream_errors_total", kind="broken") >= 1,
               10, msg="an upstream error counted")


def test_coalesced_requests_counted(origin, strata):
    gate = origin.gate("/m/slow")
    origin.route("/m/slow", headers=CC60, body=b"slow", gate=gate)
    s = strata(routes=ROUTES)
    assert val(scrape(s)[1], "strata_http_coalesced_requests_total") == 0
    conns = []
    try:
        for _ in range(2):
            c = s.conn(timeout=20)
            c.request("GET", "/m/slow", host=s.host)
            conns.append(c)
            if len(conns) == 1:
                gate.wait_waiting(1)
        wait_waiters(s, 1)
        gate.release()
        rs = [c.read_response() for c in conns]
    finally:
        gate.release()
        for c in conns:
            c.close()
    assert [r.content for r in rs] == [b"slow", b"slow"]
    assert origin.count("/m/slow") == 1
    wait_val(s, "strata_http_coalesced_requests_total", 1)
    _, smp, _ = scrape(s)
    assert val(smp, "strata_upstream_requests_total", route="m") == 1
    # the waiter found the stored object when it looked again: a hit, as its
    # Cache-Status says ("hit; ...; collapsed")
    assert sorted("collapsed" in cs_params(cache_status(r)) for r in rs) == [False, True]
    wait_val(s, "strata_http_requests_total", 1, route="m", cache_result="hit")
    wait_val(s, "strata_http_requests_total", 1, route="m", cache_result="miss")


# ---- labels --------------------------------------------------------------------------

def _user_key_suffixes(identities):
    out = []
    for ident in identities:
        mac = hmac.new(USER_SECRET.encode(), ident.encode(), hashlib.sha256).hexdigest()
        out += [mac[:32], mac]
    return out


def test_labels_never_carry_keys_paths_or_users(origin, strata):
    origin.route("/me/secret-path-q7", handler=lambda req: (
        200, {"Cache-Control": "private, max-age=60"},
        ("hello %s" % req.headers.get("Authorization")).encode()))
    origin.route("/unrouted-path-4410", headers=CC60, body=b"x")
    origin.route("/m/item-path-9931?user=carol-id-7781", headers=CC60, body=b"x")
    s = strata(routes=ROUTES)
    users = ("Bearer alice-id-5931", "Bearer bob-id-2284")
    for u in users:
        for _ in range(2):
            r = s.get("/me/secret-path-q7", headers={"Authorization": u})
            assert r.status_code == 200 and u.encode() in r.content
    s.get("/unrouted-path-4410")
    s.get("/m/item-path-9931?user=carol-id-7781")
    s.purge("/unrouted-path-4410")
    r = s.admin_request("PUT", "/_strata/caches/default/keys/kv-secret-key-8812?tags=kvtag-5521",
                        data=b"v")
    assert r.status_code == 200
    s.admin_get("/_strata/caches/session/keys/kv-missing-key-1193")
    s.invalidate(cache="default", tags=["kvtag-5521"], patterns=["kv-pattern-6617*"])
    wait_val(s, "strata_http_requests_total", 2, route="me", cache_result="hit")

    text, smp, fams = scrape(s)
    allowed = {
        "cache": set(CACHES),
        "route": {"m", "off", "me", "(none)"},
        "cache_result": RESULTS,
        "kind": {"key", "pattern", "tag", "all", "connect", "timeout", "broken"},
        "op": set(OPS),
        "backend": {"memory"},
        "version": None,  # any
        "le": None,
    }
    for (name, labels) in smp:
        for k, v in labels:
            assert k in allowed, "unexpected label %s=%r on %s" % (k, v, name)
            if allowed[k] is not None:
                assert v in allowed[k], "label %s=%r on %s" % (k, v, name)
    secrets = ["secret-path", "alice", "bob", "carol", "item-path", "unrouted", "kv-secret",
               "kv-missing", "kvtag", "kv-pattern", "/me/", "/m/", "h:127.0.0.1", "Bearer"]
    secrets += _user_key_suffixes(users) + _user_key_suffixes(
        [u.split(" ", 1)[1] for u in users])
    for sec in secrets:
        assert sec not in text, "%r appears in /metrics" % sec


# ---- per-cache series ---------------------------------------------------------------------

def test_cache_op_duration_has_every_op_of_every_cache(origin, strata):
    s = strata()
    # some operations on `default`: delete and invalidate are timed every call
    assert s.admin_request("PUT", "/_strata/caches/default/keys/a", data=b"1").status_code == 200
    assert s.admin_request("DELETE", "/_strata/caches/default/keys/a").status_code == 200
    s.invalidate(cache="default", patterns=["x*"])
    _, smp, _ = scrape(s)
    name = "strata_cache_op_duration_seconds"
    for c in CACHES:
        for op in OPS:
            assert (name + "_count", frozenset({"cache": c, "op": op}.items())) in smp, (c, op)
            assert (name + "_sum", frozenset({"cache": c, "op": op}.items())) in smp, (c, op)
            assert (name + "_bucket", frozenset({"cache": c, "op": op, "le": "+Inf"}.items())) \
                in smp, (c, op)
    assert val(smp, name + "_count", cache="default", op="delete") >= 1
    assert val(smp, name + "_count", cache="default", op="invalidate") >= 1
    assert val(smp, name + "_count", cache="session", op="delete") == 0


def test_cache_info_names_the_backend(origin, strata):
    s = strata()
    _, smp, _ = scrape(s)
    for c in CACHES:
        assert val(smp, "strata_cache_info", cache=c, backend="memory") == 1


def test_uptime_and_build_info(origin, strata):
    s = strata()
    _, smp, fams = scrape(s)
    assert val(smp, "strata_uptime_seconds") >= 0
    build = [f for f in fams if f.name == "strata_build_info"]
    assert build and len(build[0].samples) == 1
    assert build[0].samples[0].value == 1
    assert re.fullmatch(r"\S+", build[0].samples[0].labels["version"])


# ---- access -------------------------------------------------------------------------------

def test_metrics_require_the_token(origin, strata):
    s = strata()
    for kw in ({"token": None}, {"token": "wrong"},
               {"headers": {"Authorization": "Basic dGVzdC10b2tlbg=="}, "token": None}):
        r = s.admin_get("/metrics", **kw)
        assert r.status_code == 401, (kw, r.status_code)
        assert r.headers["Content-Type"].startswith("application/json")
        body = r.json()
        assert body.get("error") and body.get("detail")
        assert "strata_" not in r.text
    with RawConn(s.admin_port, timeout=10) as c:
        c.request("GET", "/metrics", {"Authorization": "Bearer %s" % ADMIN_TOKEN},
                  host="evil.example")
        r = c.read_response()
    assert r.status_code == 403 and b"strata_" not in r.content


def test_metrics_are_not_on_the_proxy_listener(origin, strata):
    s = strata()
    r = s.get("/metrics")
    assert b"strata_cache_hits_total" not in r.content
    assert origin.count("/metrics") == 1  # forwarded like any other path


def test_label_values_are_escaped(origin, strata):
    """A route name is free text from the config: quotes and backslashes in
    it are escaped so the exposition still parses to the same value."""
    name = 'we"ird\\name'
    origin.route("/q/1", headers=CC60, body=b"x")
    s = strata(routes=[{"name": name, "path": "/q/*"}])
    s.get("/q/1")
    wait_val(s, "strata_http_requests_total", 1, route=name, cache_result="miss")
    text = s.admin_get("/metrics").text
    assert 'route="we\\"ird\\\\name"' in text
