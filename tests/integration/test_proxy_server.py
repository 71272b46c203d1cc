"""strata serve as a server: keep-alive, pipelining, HTTP/1.0 clients,
SIGTERM/SIGINT (stop accepting, finish in-flight requests, exit 0), the
access log, running without a config file, configuration errors at start."""
import re
import signal
import subprocess
import time

import pytest

from conftest import port_open
from proxyutil import RawConn, assert_cs, parse_logfmt, wait_until

CC60 = {"Cache-Control": "max-age=60"}


# ---- connections -----------------------------------------------------------------------

def test_keep_alive_serves_many_requests_on_one_connection(origin, strata):
    origin.route("/ka", headers=CC60, body=b"ka")
    origin.route("/nc", body=b"nc")
    s = strata()
    with RawConn(s.port, timeout=10) as c:
        for path, body in (("/ka", b"ka"), ("/ka", b"ka"), ("/nc", b"nc"), ("/zz", b"no route"),
                           ("/ka", b"ka")):
            c.request("GET", path, host=s.host)
            r = c.read_response()
            assert r.content == body
            assert r.headers.get("Connection", "").lower() != "close"
        assert not c.wait_closed(0.3)
    assert origin.count("/ka") == 1


def test_connection_close_is_honoured(origin, strata):
    origin.route("/cc", body=b"cc")
    s = strata()
    with RawConn(s.port, timeout=10) as c:
        c.request("GET", "/cc", headers={"Connection": "close"}, host=s.host)
        assert c.read_response().content == b"cc"
        assert c.wait_closed(5)


def test_pipelined_requests_answered_in_order(origin, strata):
    origin.route("/slow", headers=CC60, body=b"slow", delay=0.3)
    origin.route("/hit", headers=CC60, body=b"hit")
    origin.route("/post", method="POST", handler=lambda req: (200, {}, b"posted:" + req.body))
    s = strata()
    s.get("/hit")
    h = s.host
    batch = ("GET /slow HTTP/1.1\r\nHost: %s\r\n\r\n"
             "GET /hit HTTP/1.1\r\nHost: %s\r\n\r\n"
             "HEAD /hit HTTP/1.1\r\nHost: %s\r\n\r\n"
             "POST /post HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n\r\nhello"
             "GET /nothing HTTP/1.1\r\nHost: %s\r\n\r\n"
             "GET /hit HTTP/1.1\r\nHost: %s\r\n\r\n") % ((h,) * 6)
    with RawConn(s.port, timeout=10) as c:
        c.send(batch)
        got = [c.read_response(m) for m in ("GET", "GET", "HEAD", "POST", "GET", "GET")]
    assert [(r.status_code, r.content) for r in got] == [
        (200, b"slow"), (200, b"hit"), (200, b""), (200, b"posted:hello"),
        (404, b"no route"), (200, b"hit")]
    assert got[2].headers["Content-Length"] == "3"
    assert_cs(got[1], "strata; hit; ttl=60")


def test_many_pipelined_requests(origin, strata):
    origin.route("/p", headers=CC60, body=b"p" * 1000)
    s = strata()
    n = 100
    with RawConn(s.port, timeout=20) as c:
        c.send(("GET /p HTTP/1.1\r\nHost: %s\r\n\r\n" % s.host) * n)
        rs = [c.read_response() for _ in range(n)]
    assert all(r.status_code == 200 and r.content == b"p" * 1000 for r in rs)
    assert origin.count("/p") == 1


def test_http10_client(origin, strata):
    origin.route("/ten", headers=CC60, body=b"one point oh")
    s = strata()
    for _ in range(2):  # a miss, then a hit
        with RawConn(s.port, timeout=10) as c:
            c.send("GET /ten HTTP/1.0\r\nHost: %s\r\n\r\n" % s.host)
            r = c.read_response()
            assert (r.status_code, r.content) == (200, b"one point oh")
            assert "chunked" not in r.headers.get("Transfer-Encoding", "")
            assert c.wait_closed(5)
    assert origin.count("/ten") == 1


def test_http10_client_gets_chunked_origin_body_unchunked(origin, strata):
    body = b"0123456789" * 5000
    origin.route("/tenc", headers={"Cache-Control": "private"}, body=body, chunked=True,
                 chunk_size=1000)
    s = strata()
    with RawConn(s.port, timeout=10) as c:
        c.send("GET /tenc HTTP/1.0\r\nHost: %s\r\n\r\n" % s.host)
        r = c.read_response()
        assert "Transfer-Encoding" not in r.headers
        assert r.content == body
        assert c.wait_closed(5)


def test_workers_auto(origin, strata):
    origin.route("/w", body=b"w")
    s = strata(server={"workers": "auto"})
    assert s.get("/w").content == b"w"


# ---- signals ---------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_in_flight_requests_and_exits_0(origin, strata, sig):
    gate = origin.gate("/inflight")
    origin.route("/inflight", body=b"finished", gate=gate)
    s = strata()
    c = RawConn(s.port, timeout=20)
    try:
        c.request("GET", "/inflight", host=s.host)
        gate.wait_waiting(1)
        s.proc.send_signal(sig)
        wait_until(lambda: not port_open(s.port), 10, msg="strata to stop accepting")
        assert s.alive(), "strata exited with a request in flight"
        gate.release()
        r = c.read_response()
        assert (r.status_code, r.content) == (200, b"finished")
    finally:
        gate.release()
        c.close()
    assert s.proc.wait(10) == 0
    assert s.sanitizer_report() is None


def test_sigterm_with_idle_keepalive_connections_exits_promptly(origin, strata):
    origin.route("/idle", body=b"x")
    s = strata()
    conns = []
    try:
        for _ in range(3):
            c = RawConn(s.port, timeout=10)
            c.request("GET", "/idle", host=s.host)
            c.read_response()
            conns.append(c)
        t0 = time.monotonic()
        assert s.stop() == 0
        assert time.monotonic() - t0 < 10
        for c in conns:
            assert c.wait_closed(2)
    finally:
        for c in conns:
            c.close()


# ---- access log --------------------------------------------------------------------------

def _find_key(rec, *frags):
    for k in rec:
        if any(f in k.lower() for f in frags):
            return k
    raise AssertionError("no key with %s in %r" % (frags, rec))


def test_access_log_one_logfmt_line_per_request(origin, strata):
    origin.route("/logged", headers=CC60, body=b"x" * 5000)
    origin.route("/logged", method="POST", body=b"ok")
    s = strata()
    s.get("/logged")
    s.get("/logged")
    s.post("/logged", data=b"abc")
    s.get("/missing-route")

    lines = wait_until(lambda: len(s.access_log_lines()) >= 4 and s.access_log_lines(), 10,
                       msg="4 access log lines")
    assert len(lines) == 4, lines
    recs = [parse_logfmt(ln) for ln in lines]
    for rec in recs:
        for k in ("method", "path", "status"):
            assert k in rec, (k, rec)
        for frags in (("cache",), ("bytes",), ("dur",), ("upstream",)):
            _find_key(rec, *frags)
    # lines of different workers need not be in request order
    ck = _find_key(recs[0], "cache")
    gets = [r for r in recs if (r["method"], r["path"]) == ("GET", "/logged")]
    assert sorted(r[ck] for r in gets) == ["hit", "miss"], gets
    miss = [r for r in gets if r[ck] == "miss"][0]
    hit = [r for r in gets if r[ck] == "hit"][0]
    assert miss["status"] == hit["status"] == "200"
    post = [r for r in recs if r["method"] == "POST"]
    nf = [r for r in recs if r["path"] == "/missing-route"]
    assert len(post) == 1 and len(nf) == 1 and nf[0]["status"] == "404"
    bk = _find_key(miss, "bytes")
    assert int(miss[bk]) >= 5000 and int(hit[bk]) >= 5000
    dk = _find_key(miss, "dur")
    assert re.match(r"\d", miss[dk]), miss[dk]


def test_access_log_to_stdout(origin, strata):
    origin.route("/out", body=b"x")
    s = strata(server={"access_log": "stdout"})
    s.get("/out")
    wait_until(lambda: "/out" in s.stdout_text(), 10, msg="access log line on stdout")
    rec = [parse_logfmt(ln) for ln in s.stdout_text().splitlines() if "/out" in ln][0]
    assert rec.get("method") == "GET" and rec.get("status") == "200"


def test_access_log_off(origin, strata, tmp_path):
    origin.route("/off", body=b"x")
    s = strata(server={"access_log": "off"})
    s.get("/off")
    assert s.stop() == 0  # everything strata would log is out by then
    assert "/off" not in s.stdout_text()
    assert not any("/off" in p.read_text(errors="replace")
                   for p in tmp_path.glob("access*.log"))


# ---- starting ------------------------------------------------------------------------------

def test_serve_with_upstream_and_no_config_file(origin, strata):
    origin.route("/nocfg", headers=CC60, body=b"no config")
    s = strata(no_config=True, wait_admin=False,
               args=["--listen", "127.0.0.1:{port}", "--upstream",
                     "http://127.0.0.1:{origin_port}"])
    r = s.get("/nocfg")
    assert (r.status_code, r.content) == (200, b"no config")
    assert_cs(s.get("/nocfg"), "strata; hit; ttl=60")
    assert origin.count() == 1


def test_log_level(origin, strata):
    origin.route("/ll", body=b"x")
    s = strata()
    s.get("/ll")
    wait_until(lambda: "info" in s.stderr_text().lower(), 5, msg="info logs by default")
    q = strata(server={"log_level": "error"})
    q.get("/ll")
    q.get("/nothing-here")
    assert q.stop() == 0
    text = q.stderr_text().lower()
    assert "info" not in text and "debug" not in text, text[:500]


def test_debug_clock_needs_strata_test_clock(origin, strata):
    origin.route("/clk", headers=CC60, body=b"x")
    s = strata(env={"STRATA_TEST_CLOCK": None})
    s.get("/clk")
    r = s.admin_post("/_strata/debug/clock", json={"advance_ms": 120000})
    assert r.status_code != 200
    assert_cs(s.get("/clk"), "strata; hit; ttl=60")


def test_debug_clock_needs_the_admin_token(origin, strata):
    s = strata()
    r = s.admin_post("/_strata/debug/clock", json={"advance_ms": 1000}, token=None)
    assert r.status_code == 401
    r = s.admin_post("/_strata/debug/clock", json={"advance_ms": 1000}, token="wrong")
    assert r.status_code == 401


def test_raw_yaml_sections(origin, strata):
    """config_yaml_extra: block-style YAML as a user writes it."""
    origin.route("/raw/x", body=b"raw")
    s = strata(config_yaml_extra=(
        "http_cache:\n"
        "  user_secret: \"s\"\n"
        "  routes:\n"
        "    - path: \"/raw/*\"\n"
        "      ttl: 2m\n"
        "bus:\n"
        "  timeout: 5s\n"))
    s.get("/raw/x")
    r = s.get("/raw/x")
    assert r.content == b"raw"
    assert_cs(r, "strata; hit; ttl=120")
    assert origin.count() == 1


BAD_CONFIGS = [
    ("https upstream", 'server:\n  listen: "127.0.0.1:0"\n  upstream: "https://127.0.0.1:1"\n', 3),
    ("bare number duration",
     'server:\n  upstream: "http://127.0.0.1:1"\nhttp_cache:\n  default_ttl: 300\n', 4),
    ("unknown route key",
     'server:\n  upstream: "http://127.0.0.1:1"\nhttp_cache:\n  routes:\n'
     '    - path: "/a"\n      ttll: 5m\n', 6),
    ("unknown server key", 'server:\n  upstream: "http://127.0.0.1:1"\n  wrokers: 2\n', 3),
    ("per_user without user_secret",
     'server:\n  upstream: "http://127.0.0.1:1"\nhttp_cache:\n  routes:\n'
     '    - path: "/me"\n      per_user: true\n      user_from: "header:Authorization"\n', None),
    ("bad user_from",
     'server:\n  upstream: "http://127.0.0.1:1"\nhttp_cache:\n  user_secret: s\n  routes:\n'
     '    - path: "/me"\n      per_user: true\n      user_from: "ip:whatever"\n', 8),
    ("unset env", 'server:\n  upstream: "http://127.0.0.1:1"\nadmin:\n'
                  '  token: "${STRATA_TEST_SURELY_UNSET_VAR}"\n', 4),
    ("bad purge.allow", 'server:\n  upstream: "http://127.0.0.1:1"\nhttp_cache:\n'
                        '  purge:\n    allow: ["not-a-cidr"]\n', 5),
]


def _bad_config(tmp_path, text, line):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    return cfg, ("%s:%d:" % (cfg, line) if line else "%s:" % cfg)


@pytest.mark.parametrize("name,text,line", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_fails_at_start_with_file_and_line(build_dir, tmp_path, name, text, line):
    cfg, where = _bad_config(tmp_path, text, line)
    p = subprocess.run([str(build_dir / "strata"), "serve", "-c", str(cfg)],
                       capture_output=True, text=True, timeout=20, cwd=str(tmp_path))
    assert p.returncode not in (0, None), p
    assert where in p.stderr, (where, p.stderr)


@pytest.mark.parametrize("name,text,line", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_check_config_validates_the_serve_sections(build_dir, tmp_path, name, text, line):
    """Issue 3: the full YAML config is validated ... `strata check-config -c FILE`."""
    cfg, where = _bad_config(tmp_path, text, line)
    c = subprocess.run([str(build_dir / "strata"), "check-config", "-c", str(cfg)],
                       capture_output=True, text=True, timeout=20, cwd=str(tmp_path))
    assert c.returncode == 1 and where in c.stderr, (c.returncode, c.stdout, c.stderr)
