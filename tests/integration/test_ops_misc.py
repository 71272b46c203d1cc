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
