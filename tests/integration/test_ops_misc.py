"""Operations details: SIGHUP reopens the access log (logrotate), the admin
Host rule (IP literals and localhost pass, DNS names do not), debug logging of
cache operations, and the demo config's admin workflow."""
import os
import signal
import time

import requests

from proxyutil import ADMIN_TOKEN, raw_request


def _wait(pred, what, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def test_sighup_reopens_the_access_log(strata, origin):
    origin.route("/a", body=b"a", headers={"Cache-Control": "max-age=60"})
    origin.route("/b", body=b"b")
    s = strata()
    assert s.get("/a").status_code == 200
    _wait(lambda: any("path=/a " in ln for ln in s.access_log_lines()), "first line")
    rotated = s.access_log_path.with_suffix(".log.1")
    os.rename(s.access_log_path, rotated)  # what logrotate does
    s.proc.send_signal(signal.SIGHUP)
    _wait(lambda: "access log reopened" in s.stderr_text(), "the reopen message")
    assert s.alive()
    assert s.get("/b").status_code == 200
    _wait(lambda: s.access_log_path.exists()
          and "path=/b " in s.access_log_path.read_text(), "a line in the new file")
    old = rotated.read_text()
    assert "path=/a " in old and "path=/b" not in old


def test_sighup_with_stdout_access_log_is_harmless(strata, origin):
    origin.route("/a", body=b"a")
    s = strata(server={"access_log": "stdout"})
    s.proc.send_signal(signal.SIGHUP)
    assert s.get("/a").status_code == 200
    assert s.alive()


def _admin_host(s, host):
    return raw_request(s.admin_port, "GET", "/_strata/health",
                       [("Host", host), ("Authorization", "Bearer " + ADMIN_TOKEN)])


def test_admin_host_rule(strata, origin):
    s = strata()
    ok = ["127.0.0.1:%d" % s.admin_port, "127.0.0.1", "localhost",
          "localhost:%d" % s.admin_port, "10.1.2.3:%d" % s.admin_port, "[::1]:%d" % s.admin_port,
          "[::1]"]
    for h in ok:
        r = _admin_host(s, h)
        assert r.status_code == 200, (h, r.status_code)
    bad = ["evil.example", "evil.example:%d" % s.admin_port, "127.0.0.1.nip.io",
           "localhost.evil.example", "127.0.0.1:80x", "[::1", "[::1]x", "1.2.3",
           "127.0.0.1:", ""]
    for h in bad:
        r = _admin_host(s, h)
        assert r.status_code in (400, 403), (h, r.status_code)


def test_debug_log_shows_cache_operations(strata, origin):
    origin.route("/d", body=b"d", headers={"Cache-Control": "max-age=60"})
    s = strata(server={"log_level": "debug"})
    r1 = s.get("/d")
    r2 = s.get("/d")
    rid1, rid2 = r1.headers["X-Request-Id"], r2.headers["X-Request-Id"]
    h = {"Authorization": "Bearer " + ADMIN_TOKEN}
    assert requests.put(s.admin + "/_strata/caches/http/keys/k1", data=b"v",
                        headers=h, timeout=5).status_code in (200, 404)

    def lines():
        return [ln for ln in s.stderr_text().splitlines() if "level=debug" in ln]
    _wait(lambda: any("result=hit" in ln and rid2 in ln for ln in lines()), "the hit line")
    text = "\n".join(lines())
    assert 'msg="cache get"' in text and "result=miss request_id=" + rid1 in text
    assert 'msg="cache set"' in text and "result=stored request_id=" + rid1 in text
    assert "key=h:127.0.0.1:%d/d" % s.port in text


def test_info_level_has_no_cache_operation_lines(strata, origin):
    origin.route("/d", body=b"d", headers={"Cache-Control": "max-age=60"})
    s = strata(server={"log_level": "info"})
    s.get("/d")
    s.get("/d")
    assert 'msg="cache get"' not in s.stderr_text()


def test_warm_stops_when_its_client_closes(strata, origin):
    """Closing the connection of a warm in progress stops it: no further URL
    is fetched (GET /_strata/debug/flights counts warms in progress)."""
    from proxyutil import RawConn
    gate = origin.gate()
    for i in range(4):
        origin.route("/g%d" % i, body=b"x", headers={"Cache-Control": "max-age=60"},
                     gate=gate)
    s = strata()
    body = b'{"urls": ["/g0", "/g1", "/g2", "/g3"], "concurrency": 1}'
    c = RawConn(s.admin_port, timeout=10)
    try:
        c.request("POST", "/_strata/warm",
                  {"Authorization": "Bearer " + ADMIN_TOKEN,
                   "Content-Type": "application/json"}, body,
                  host="127.0.0.1:%d" % s.admin_port)
        gate.wait_waiting(1)
        assert s.admin_get("/_strata/debug/flights").json()["warms"] == 1
    finally:
        c.close()
    _wait(lambda: s.admin_get("/_strata/debug/flights").json()["warms"] == 0,
          "the warm to stop")
    gate.release()
    # g0 was in flight and may complete; nothing after it was asked for
    assert origin.count("/g1") == origin.count("/g2") == origin.count("/g3") == 0


def _admin_raw(s, method, target, headers=(), body=None):
    hs = [("Host", "127.0.0.1:%d" % s.admin_port),
          ("Authorization", "Bearer " + ADMIN_TOKEN)] + list(headers)
    return raw_request(s.admin_port, method, target, hs, body)


def test_warm_reports_stratas_cache_status_not_the_origins(strata, origin):
    origin.route("/cs", body=b"x", headers={"Cache-Control": "max-age=60",
                                             "Cache-Status": "cdn; hit"})
    s = strata()
    r = s.admin_post("/_strata/warm", json={"urls": ["/cs"]})
    assert r.status_code == 200, r.text
    cs = r.json()[0]["cache_status"]
    assert cs.startswith("strata;") and "fwd=uri-miss" in cs, cs


def test_outside_text_that_is_not_utf8_never_breaks_a_json_answer(strata, origin):
    origin.route("/bad", body=b"x", headers={"Cache-Control": "max-age=60",
                                              "Cache-Status": "cdn; x=\xff"})
    s = strata()
    r = _admin_raw(s, "GET", "/_strata/caches/%FF/keys/k")
    assert r.status_code == 404 and b"unknown cache" in r.content, r.content
    r = _admin_raw(s, "POST", "/_strata/invalidate", [("Content-Type", "application/json")],
                   ('{"cache": "%s", "all": true}' % ("\u00e9" * 200)).encode())
    assert r.status_code == 404, r.content
    r = _admin_raw(s, "POST", "/_strata/warm", [("Content-Type", "application/json")],
                   ('{"%s": 1}' % ("a\u00e9" * 100)).encode())
    assert r.status_code == 400 and b"unknown field" in r.content, r.content
    r = s.admin_post("/_strata/warm", json={"urls": ["/bad"]})
    res = r.json()[0]
    assert res is not None and res["status"] == 200, r.text
    r = s.admin_get("/_strata/explain?url=/bad&host=%FFx")
    assert r.status_code == 200 and "host" in r.json() and "key" in r.json(), r.text


def test_explain_per_user_route_says_copies_are_per_user(strata, origin):
    origin.route("/me", body=b"me", headers={"Cache-Control": "private, max-age=30"})
    s = strata(routes=[{"name": "me", "path": "/me", "per_user": True,
                        "user_from": "header:Authorization"}])
    r = s.get("/me", headers={"Authorization": "alice"})
    assert "stored" in r.headers["Cache-Status"]
    e = s.admin_get("/_strata/explain?url=/me").json()
    assert e["per_user"] is True and "per-user" in e["reason"], e
    assert "gone since" not in e["reason"]
    assert "alice" not in str(e)


def test_admin_errors_of_the_http_layer_carry_a_request_id(strata, origin):
    s = strata()
    r = _admin_raw(s, "GET", "/_strata/health", [("X-Big", "a" * 40000)])
    assert r.status_code == 431
    assert r.headers.get("X-Request-Id", "").startswith("adm-")
    assert "Cache-Status" not in r.headers  # the proxy's member is not the admin's


def test_admin_415_has_its_reason_phrase(strata, origin):
    s = strata()
    from proxyutil import RawConn
    with RawConn(s.admin_port, timeout=10) as c:
        c.request("POST", "/_strata/invalidate",
                  {"Authorization": "Bearer " + ADMIN_TOKEN, "Content-Type": "text/plain"},
                  b"{}", host="127.0.0.1:%d" % s.admin_port)
        r = c.read_response("POST")
    assert r.status_code == 415 and r.reason == "Unsupported Media Type"


def test_admin_answers_expect_100_continue(strata, origin):
    import socket
    s = strata()
    with socket.create_connection(("127.0.0.1", s.admin_port), timeout=10) as c:
        c.sendall(("PUT /_strata/caches/default/keys/k HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Authorization: Bearer %s\r\nContent-Length: 3\r\n"
                   "Expect: 100-continue\r\n\r\n" % (s.admin_port, ADMIN_TOKEN)).encode())
        got = b""
        while b"\r\n\r\n" not in got:  # the interim answer, before any body byte
            d = c.recv(4096)
            assert d, got
            got += d
        assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), got
        c.sendall(b"abc")
        rest = got[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        while b"\r\n\r\n" not in rest:
            d = c.recv(4096)
            assert d, rest
            rest += d
        assert rest.startswith(b"HTTP/1.1 200 "), rest
    assert requests.get(s.admin + "/_strata/caches/default/keys/k",
                        headers={"Authorization": "Bearer " + ADMIN_TOKEN},
                        timeout=5).content == b"abc"


def _own_strata(build_dir, tmp_path, name, port, admin_port, up, token_file):
    """strata serve with no admin.token (the fixture always sets one)."""
    import subprocess
    cfg = tmp_path / (name + ".yaml")
    cfg.write_text('server: {listen: "127.0.0.1:%d", upstream: "http://127.0.0.1:%d"}\n'
                   'admin: {listen: "127.0.0.1:%d", token_file: "%s"}\n'
                   % (port, up, admin_port, token_file))
    return subprocess.Popen([str(build_dir / "strata"), "serve", "-c", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=str(tmp_path))


def _health(admin_port, tok):
    try:
        return requests.get("http://127.0.0.1:%d/_strata/health" % admin_port,
                            headers={"Authorization": "Bearer " + tok},
                            timeout=5).status_code
    except requests.ConnectionError:
        return None


def _stop(p):
    p.terminate()
    assert p.wait(10) == 0
    err = p.stderr.read().decode(errors="replace")
    assert "Sanitizer" not in err and "runtime error" not in err, err


def test_generated_token_file_replaces_a_symlink_instead_of_following_it(strata, build_dir,
                                                                         tmp_path):
    """No admin.token: strata makes one and writes it to a new file; a symlink
    planted at token_file is replaced, its target left alone."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = tmp_path / "tok"
    link.symlink_to(victim)
    port, admin_port, up = strata.ports(3)
    p = _own_strata(build_dir, tmp_path, "own", port, admin_port, up, link)
    try:
        _wait(lambda: p.poll() is not None or (link.exists() and not link.is_symlink()
                                                 and link.read_text().endswith("\n")),
              "the token file")
        assert p.poll() is None, p.stderr.read()
        assert victim.read_text() == "precious\n"
        tok = link.read_text().strip()
        assert len(tok) == 48 and oct(link.stat().st_mode & 0o777) == "0o600"
        _wait(lambda: _health(admin_port, tok) == 200, "the admin listener")
    finally:
        _stop(p)


def test_a_second_strata_that_cannot_start_keeps_the_running_ones_token(strata, build_dir,
                                                                        tmp_path):
    tokf = tmp_path / "tok"
    port, admin_port, up = strata.ports(3)
    a = _own_strata(build_dir, tmp_path, "a", port, admin_port, up, tokf)
    try:
        _wait(lambda: a.poll() is not None or _health(admin_port, "x") == 401, "strata a")
        _wait(lambda: tokf.exists() and tokf.read_text().endswith("\n"), "a's token")
        tok = tokf.read_text()
        b = _own_strata(build_dir, tmp_path, "b", port, admin_port, up, tokf)
        assert b.wait(20) == 1
        assert "in use" in b.stderr.read().decode()
        assert tokf.read_text() == tok
        assert _health(admin_port, tok.strip()) == 200
        assert not [f for f in tmp_path.iterdir() if f.name.startswith("tok.")]
    finally:
        _stop(a)


def test_100_continue_only_for_a_body_strata_will_read(strata, origin):
    import socket
    s = strata()

    def head_answer(req):
        with socket.create_connection(("127.0.0.1", s.admin_port), timeout=10) as c:
            c.sendall(req.encode())
            got = b""
            while b"\r\n\r\n" not in got:
                d = c.recv(4096)
                if not d:
                    break
                got += d
            return got

    auth = "Host: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n" % (s.admin_port,
                                                                    ADMIN_TOKEN)
    big = head_answer("PUT /_strata/caches/default/keys/k HTTP/1.1\r\n" + auth +
                      "Content-Length: 70000000\r\nExpect: 100-continue\r\n\r\n")
    assert big.startswith(b"HTTP/1.1 413 "), big
    nf = head_answer("POST /_strata/nope HTTP/1.1\r\n" + auth + "Content-Type: application/json"
                     "\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert nf.startswith(b"HTTP/1.1 404 "), nf
    ct = head_answer("POST /_strata/invalidate HTTP/1.1\r\n" + auth + "Content-Type: text/plain"
                     "\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert ct.startswith(b"HTTP/1.1 415 "), ct
    with socket.create_connection(("127.0.0.1", s.admin_port), timeout=10) as c:
        c.sendall(("PUT /_strata/caches/default/keys/k HTTP/1.0\r\n" + auth +
                   "Content-Length: 3\r\nExpect: 100-continue\r\n\r\nabc").encode())
        got = b""
        while True:
            d = c.recv(4096)
            if not d:
                break
            got += d
    assert got.startswith(b"HTTP/1.1 200 "), got  # no interim answer for HTTP/1.0
