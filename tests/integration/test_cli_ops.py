"""The `strata` admin commands against a running strata: clear, warm, stats,
get/set/del; which admin and which token; failures as one line on stderr
with exit code 1; usage errors with exit code 2.

Every command runs the CLI binary as a subprocess, bounded in time, with
`--admin` naming the test's strata and STRATA_ADMIN_TOKEN its token (unless
the test is about finding them), in a working directory of its own (so no
stray strata-admin.token is read)."""
import json
import os
import pty
import select
import signal
import subprocess
import time

import pytest

from conftest import SANITIZER_MARKS, free_ports
from proxyutil import ADMIN_TOKEN, cache_status, cs_params, numbered

CC60 = {"Cache-Control": "max-age=60"}


class Run:
    """A finished CLI process: .rc, .out (bytes), .err (str)."""

    def __init__(self, p):
        self.rc = p.returncode
        self.out = p.stdout
        self.err = p.stderr.decode(errors="replace")

    @property
    def text(self):
        return self.out.decode(errors="replace")

    def json(self):
        return json.loads(self.out)

    def one_error_line(self, *words):
        """stderr is exactly one line, containing every word."""
        assert self.err.endswith("\n") and self.err.count("\n") == 1, repr(self.err)
        for w in words:
            assert w in self.err, (w, self.err)

    def __repr__(self):
        return "<Run rc=%r out=%r err=%r>" % (self.rc, self.out[:300], self.err[:300])


def _env(token, extra=None):
    e = dict(os.environ)
    e.pop("STRATA_ADMIN_TOKEN", None)
    if token is not None:
        e["STRATA_ADMIN_TOKEN"] = token
    e.update(extra or {})
    return e


def _no_sanitizer_report(err):
    for m in SANITIZER_MARKS:
        assert m not in err, err


@pytest.fixture
def cli(build_dir, tmp_path):
    """cli(s, CMD, ARGS..., token=, input=, cwd=, admin=) -> Run. `s` (a
    Strata or None) adds --admin s.admin after CMD unless admin=False."""
    workdir = tmp_path / "cli-cwd"
    workdir.mkdir()

    def run(s, *args, token=ADMIN_TOKEN, input=None, cwd=None, admin=True, env=None):
        argv = [str(build_dir / "strata"), *args]
        if s is not None and admin:
            argv[2:2] = ["--admin", s.admin]  # before a possible `--`
        p = subprocess.run(argv, capture_output=True, input=input, timeout=60,
                           env=_env(token, env), cwd=str(cwd or workdir))
        r = Run(p)
        _no_sanitizer_report(r.err)
        return r

    run.cwd = workdir
    return run


def _hit(r):
    return "hit" in cs_params(cache_status(r))


def _primed(s, path):
    s.get(path)
    r = s.get(path)
    assert _hit(r), r.headers.get("Cache-Status")


# ---- get / set / del ------------------------------------------------------------

def test_set_get_del_round_trip(strata, cli):
    s = strata()
    r = cli(s, "set", "greeting", "hello", "--ttl", "5m", "--tags", "a,b")
    assert r.rc == 0, r
    assert r.out == b""
    r = cli(s, "get", "greeting")
    assert (r.rc, r.out) == (0, b"hello"), r
    r = cli(s, "del", "greeting")
    assert (r.rc, r.out) == (0, b""), r
    r = cli(s, "get", "greeting")
    assert r.rc == 1 and r.out == b""
    r.one_error_line("greeting", "not found")
    r = cli(s, "del", "greeting")
    assert r.rc == 1
    r.one_error_line("greeting", "not found")


def test_set_tags_then_clear_tag_removes_it(strata, cli):
    s = strata()
    assert cli(s, "set", "p:1", "one", "--tags", "products,red").rc == 0
    assert cli(s, "set", "p:2", "two", "--tags", "products").rc == 0
    assert cli(s, "set", "u:1", "other", "--tags", "users").rc == 0
    r = cli(s, "clear", "--tag", "red")
    assert r.rc == 0, r
    assert r.text.startswith("removed ") and "(approximate)" in r.text
    assert cli(s, "get", "p:1").rc == 1
    assert cli(s, "get", "p:2").out == b"two"
    r = cli(s, "clear", "--tag", "products", "users", "--json")
    assert r.rc == 0, r
    body = r.json()
    assert isinstance(body["removed"], int) and body["exact"] is False
    assert cli(s, "get", "p:2").rc == 1
    assert cli(s, "get", "u:1").rc == 1


def test_set_ttl_expires(strata, cli):
    s = strata()  # STRATA_TEST_CLOCK=1: the clock moves only when told
    assert cli(s, "set", "short", "v", "--ttl", "5s").rc == 0
    assert cli(s, "set", "forever", "v", "--ttl", "never").rc == 0
    assert cli(s, "get", "short").out == b"v"
    s.advance(6000)
    assert cli(s, "get", "short").rc == 1
    assert cli(s, "get", "forever").out == b"v"


def test_set_value_from_stdin_is_binary_safe(strata, cli):
    s = strata()
    value = bytes(range(256)) * 64 + b"\0end"
    r = cli(s, "set", "blob", "-", input=value)
    assert r.rc == 0, r
    r = cli(s, "get", "blob")
    assert r.rc == 0 and r.out == value


def test_keys_are_percent_encoded(strata, cli):
    s = strata()
    key = "a b/c?d%e#f+g&h=i"
    assert cli(s, "set", key, "odd").rc == 0
    assert cli(s, "get", key).out == b"odd"
    # The admin API sees the same key, encoded the same way.
    enc = "a%20b%2Fc%3Fd%25e%23f%2Bg%26h%3Di"
    r = s.admin_get("/_strata/caches/default/keys/" + enc)
    assert r.status_code == 200 and r.content == b"odd"
    # A key that starts with '-', after --.
    assert cli(s, "set", "--", "-dash", "d").rc == 0
    assert cli(s, "get", "--", "-dash").out == b"d"


def test_named_cache(strata, cli):
    s = strata()
    assert cli(s, "set", "sid", "x", "--cache", "session").rc == 0
    assert cli(s, "get", "sid", "--cache", "session").out == b"x"
    assert cli(s, "get", "sid").rc == 1  # not in `default`


def test_unknown_cache_is_one_line_exit_1(strata, cli):
    s = strata()
    for args in (("get", "k"), ("set", "k", "v"), ("del", "k")):
        r = cli(s, *args, "--cache", "nope")
        assert r.rc == 1, r
        r.one_error_line("unknown cache", "nope")
    r = cli(s, "clear", "--all", "--cache", "nope")
    assert r.rc == 1, r
    r.one_error_line("unknown cache", "nope")


def test_admin_error_detail_is_shown(strata, cli):
    s = strata()
    r = cli(s, "clear", "--pattern", "[unclosed")
    assert r.rc == 1, r
    r.one_error_line("strata clear:", "patterns")


# ---- clear ----------------------------------------------------------------------

def test_clear_all(strata, cli):
    s = strata()
    for k in ("a", "b"):
        assert cli(s, "set", k, "v").rc == 0
    assert cli(s, "set", "c", "v", "--cache", "static").rc == 0
    r = cli(s, "clear", "--all", "--cache", "default")
    assert r.rc == 0, r
    assert r.text == "removed 2\n"
    assert cli(s, "get", "a").rc == 1
    assert cli(s, "get", "c", "--cache", "static").out == b"v"
    r = cli(s, "clear", "--all")
    assert r.rc == 0 and r.text == "removed 1\n", r
    assert cli(s, "get", "c", "--cache", "static").rc == 1


def test_clear_pattern(strata, cli):
    s = strata()
    for k in ("user:1", "user:2", "order:1"):
        assert cli(s, "set", k, "v").rc == 0
    r = cli(s, "clear", "--pattern", "user:*", "--json")
    assert r.rc == 0, r
    assert r.json() == {"removed": 2, "exact": True}
    assert cli(s, "get", "user:1").rc == 1
    assert cli(s, "get", "order:1").out == b"v"


def test_clear_url_and_url_pattern(origin, strata, cli):
    for p in ("/u/1", "/u/2", "/v/1"):
        origin.route(p, handler=numbered(headers=CC60))
    s = strata()
    for p in ("/u/1", "/u/2", "/v/1"):
        _primed(s, p)
    r = cli(s, "clear", "--url", "/u/1", "http://%s/v/1" % s.host)
    assert r.rc == 0, r
    assert r.text.startswith("removed ")
    assert not _hit(s.get("/u/1")) and not _hit(s.get("/v/1"))
    assert _hit(s.get("/u/2"))
    assert origin.count("/u/1") == 2 and origin.count("/u/2") == 1
    _primed(s, "/u/1")
    r = cli(s, "clear", "--url-pattern", "/u/*")
    assert r.rc == 0 and r.text == "removed 2\n", r
    assert not _hit(s.get("/u/1")) and not _hit(s.get("/u/2"))


# ---- warm -----------------------------------------------------------------------

def test_warm_endpoints_then_requests_hit(origin, strata, cli):
    for p in ("/w/1", "/w/2", "/w/3"):
        origin.route(p, headers=CC60, body=b"body of " + p.encode())
    s = strata()
    r = cli(s, "warm", "--endpoints", "/w/1", "/w/2", "--endpoints", "/w/3")
    assert r.rc == 0, r
    assert "3 ok, 0 failed" in r.text and "3 miss" in r.text, r
    assert r.err == ""  # no progress bar: stderr is not a terminal
    for p in ("/w/1", "/w/2", "/w/3"):
        resp = s.get(p)
        assert _hit(resp), resp.headers.get("Cache-Status")
        assert origin.count(p) == 1
    r = cli(s, "warm", "--endpoints", "/w/1", "--json")
    assert r.rc == 0, r
    res = r.json()
    assert [x["url"] for x in res] == ["/w/1"]
    assert res[0]["status"] == 200 and "hit" in res[0]["cache_status"]
    assert isinstance(res[0]["seconds"], (int, float))


def test_warm_file_skips_comments_and_blank_lines(origin, strata, cli, tmp_path):
    for i in range(10):
        origin.route("/f/%d" % i, headers=CC60, body=b"x")
    s = strata()
    f = tmp_path / "urls.txt"
    f.write_text("# the product pages\n\n" +
                 "".join("  /f/%d  \n" % i for i in range(9)) +
                 "   # indented comment\n\nhttp://%s/f/9\n" % s.host)
    r = cli(s, "warm", "--file", str(f), "--concurrency", "2", "--json")
    assert r.rc == 0, r
    res = r.json()
    assert sorted(x["url"] for x in res) == sorted(
        ["/f/%d" % i for i in range(9)] + ["http://%s/f/9" % s.host])
    assert all(x["status"] == 200 for x in res)
    assert origin.count() == 10
    for i in range(10):
        assert _hit(s.get("/f/%d" % i))
    # stdin
    r = cli(s, "warm", "--file", "-", input=b"/f/1\n# c\n/f/2\n")
    assert r.rc == 0 and "2 ok" in r.text and "2 hit" in r.text, r


def test_warm_failure_exits_1(origin, strata, cli):
    origin.route("/ok", headers=CC60, body=b"x")
    origin.route("/broken", status=502, body=b"bad gateway")
    s = strata()
    r = cli(s, "warm", "--endpoints", "/ok", "/broken")
    assert r.rc == 1, r
    assert "1 ok, 1 failed" in r.text
    assert any(ln.startswith("failed") and "/broken" in ln and "502" in ln
               for ln in r.text.splitlines()), r.text
    r.one_error_line("1 of 2 URLs failed")


def test_warm_percent_encodes_bytes_a_url_cannot_hold(origin, strata, cli, tmp_path):
    # A line that is not UTF-8 used to vanish from the batch (json_string
    # refused it) while the summary still counted it.
    for p in ("/w1", "/w%FF2", "/w3", "/caf%C3%A9", "/sp%20ace"):
        origin.route(p, headers=CC60, body=b"x")
    s = strata()
    f = tmp_path / "urls.txt"
    f.write_bytes(b"/w1\n/w\xff2\n/w3\n/caf\xc3\xa9\n/sp ace\n")
    r = cli(s, "warm", "--file", str(f), "--json")
    assert r.rc == 0, r
    res = r.json()
    assert [x["url"] for x in res] == ["/w1", "/w%FF2", "/w3", "/caf%C3%A9", "/sp%20ace"]
    assert all(x["status"] == 200 for x in res), res
    for p in ("/w1", "/w%FF2", "/w3", "/caf%C3%A9", "/sp%20ace"):
        assert origin.count(p) == 1, p
    r = cli(s, "warm", "--file", str(f))
    assert r.rc == 0, r
    assert "warmed 5 URLs" in r.text and "5 ok, 0 failed" in r.text and "5 hit" in r.text
    r = cli(s, "warm", "--endpoints", "/w\udcff2")  # the same byte, from argv
    assert r.rc == 0 and "1 ok, 0 failed; 1 hit" in r.text, r


def test_warm_lone_percent_is_encoded_and_bad_lines_are_named(origin, strata, cli,
                                                              tmp_path):
    origin.route("/50%25off", headers=CC60, body=b"x")
    origin.route("/a%2Fb", headers=CC60, body=b"y")
    s = strata()
    r = cli(s, "warm", "--endpoints", "/50%off", "/a%2Fb", "--json")
    assert r.rc == 0, r
    assert [x["status"] for x in r.json()] == [200, 200]
    assert origin.count("/50%25off") == 1 and origin.count("/a%2Fb") == 1
    f = tmp_path / "urls.txt"
    f.write_text("/a%2Fb\n# ok\nbad\n/never\n")
    origin.reset()
    r = cli(s, "warm", "--file", str(f))
    assert r.rc == 1, r
    r.one_error_line("urls.txt:3", "not a path")
    assert origin.count() == 0  # nothing is sent when a line is wrong
    r = cli(s, "warm", "--endpoints", "https://x/y")
    assert r.rc == 2, r
    r.one_error_line("not a path")


def test_warm_missing_file_and_empty_file(strata, cli, tmp_path):
    s = strata()
    r = cli(s, "warm", "--file", str(tmp_path / "nope.txt"))
    assert r.rc == 1
    r.one_error_line("nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    r = cli(s, "warm", "--file", str(empty))
    assert r.rc == 1
    r.one_error_line("no URLs")


def _run_pty(argv, env, cwd, which, until=None, timeout=30):
    """Run argv with `which` ("stdout" or "stderr") on a pty, the other one a
    pipe. Read the pty until `until(data)` is true (then return the process
    still running) or the process exits. Returns (proc, pty bytes)."""
    master, slave = pty.openpty()
    kw = {"stdin": subprocess.DEVNULL, which: slave}
    other = "stderr" if which == "stdout" else "stdout"
    kw[other] = subprocess.PIPE
    proc = subprocess.Popen(argv, env=env, cwd=cwd, **kw)
    os.close(slave)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if until and until(data):
                return proc, data
            rl, _, _ = select.select([master], [], [], 0.1)
            if rl:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed its side
                    chunk = b""
                if not chunk:
                    if proc.poll() is not None:
                        break
                    continue
                data += chunk
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            proc.wait(10)
            raise AssertionError("pty run timed out; output so far: %r" % data[-2000:])
        return proc, data
    finally:
        os.close(master)


def test_warm_progress_bar_on_a_terminal(origin, strata, build_dir, cli):
    for i in range(6):
        origin.route("/pb/%d" % i, headers=CC60, body=b"x")
    s = strata()
    argv = [str(build_dir / "strata"), "warm", "--concurrency", "1", "--admin", s.admin,
            "--endpoints"] + ["/pb/%d" % i for i in range(6)]
    proc, tty = _run_pty(argv, _env(ADMIN_TOKEN), str(cli.cwd), "stderr")
    out = proc.stdout.read()
    proc.stdout.close()
    assert proc.wait(10) == 0
    # Batches of concurrency * 4 URLs: the bar advanced after the first one.
    assert b"0/6" in tty and b"4/6" in tty and b"6/6" in tty, tty
    assert b"[" in tty and b"#" in tty
    assert b"6 ok, 0 failed" in out
    assert b"\r" not in out  # the bar never goes to stdout


# ---- stats ----------------------------------------------------------------------

def _stats(cli, s):
    r = cli(s, "stats", "--json")
    assert r.rc == 0, r
    return r.json()


def test_stats_counters_move(origin, strata, cli):
    origin.route("/st", headers=CC60, body=b"x")
    s = strata(routes=[{"name": "st", "path": "/st*", "ttl": "1m"}])
    before = _stats(cli, s)
    assert set(before) >= {"caches", "routes", "uptime_s"}
    assert {"default", "http"} <= set(before["caches"])
    assert cli(s, "set", "k", "v").rc == 0
    assert cli(s, "get", "k").rc == 0
    assert cli(s, "get", "missing").rc == 1
    s.get("/st")
    s.get("/st")
    after = _stats(cli, s)
    d0, d1 = before["caches"]["default"], after["caches"]["default"]
    assert d1["sets"] == d0["sets"] + 1
    assert d1["hits"] == d0["hits"] + 1 and d1["misses"] == d0["misses"] + 1
    assert after["routes"]["st"]["requests"] == before["routes"]["st"]["requests"] + 2
    assert after["routes"]["st"]["hit"] == 1
    r = cli(s, "stats")
    assert r.rc == 0, r
    lines = r.text.splitlines()
    head = next(ln for ln in lines if ln.startswith("cache"))
    assert "hit rate" in head and "hits" in head and "items" in head
    default = next(ln for ln in lines if ln.startswith("default "))
    assert "50.0%" in default.split()  # one hit, one miss
    route_head = next(ln for ln in lines if ln.startswith("route"))
    assert "requests" in route_head
    st = next(ln for ln in lines if ln.startswith("st "))
    assert st.split()[1:3] == ["2", "1"]  # requests, hit
    assert any(ln.startswith("uptime") for ln in lines)


def test_stats_watch_refreshes_until_sigint(strata, build_dir, cli):
    s = strata()
    argv = [str(build_dir / "strata"), "stats", "--watch", "--interval", "100ms",
            "--admin", s.admin]
    clear = b"\x1b[H\x1b[2J"
    proc, tty = _run_pty(argv, _env(ADMIN_TOKEN), str(cli.cwd), "stdout",
                         until=lambda d: d.count(clear) >= 2 and d.count(b"uptime") >= 2)
    try:
        assert proc.poll() is None, tty
        screens = tty.split(clear)[1:]
        assert b"default" in screens[0] and b"hit rate" in screens[0]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        err = proc.stderr.read().decode(errors="replace")
        _no_sanitizer_report(err)
        assert err == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()


def test_stats_watch_with_json_is_a_usage_error(cli):
    r = cli(None, "stats", "--watch", "--json")
    assert r.rc == 2
    r.one_error_line("--watch", "--json")


# ---- which admin, which token ----------------------------------------------------

UNSET = "STRATA_TEST_CLI_SURELY_UNSET"


def test_config_is_read_for_its_admin_section_only(strata, cli, tmp_path):
    # The CLI needs admin: only; an unset ${VAR} elsewhere (the proxy's
    # secrets) must not stop it, while strata serve / check-config refuse it.
    assert UNSET not in os.environ
    s = strata()
    cfg = tmp_path / "envcfg.yaml"
    cfg.write_text('server:\n  upstream: "http://${%s}:80"\n'
                   'admin:\n  listen: "127.0.0.1:%d"\n  token: "%s"\n'
                   'http_cache:\n  user_secret: "${%s}"\n'
                   % (UNSET, s.admin_port, ADMIN_TOKEN, UNSET))
    r = cli(s, "stats", "-c", str(cfg), "--json", token=None, admin=False)
    assert r.rc == 0, r
    assert "caches" in r.json()
    r = cli(s, "set", "k", "v", "-c", str(cfg), token=None, admin=False)
    assert r.rc == 0, r
    r = cli(None, "check-config", "-c", str(cfg))
    assert r.rc == 1, r
    r.one_error_line("%s:2:" % cfg, "environment variable %s is not set" % UNSET)


def test_config_unset_variable_in_admin_is_one_line_with_file_and_line(strata, cli,
                                                                       tmp_path):
    s = strata()
    cfg = tmp_path / "tok.yaml"
    cfg.write_text('admin:\n  listen: "127.0.0.1:%d"\n  token: "${%s}"\n'
                   % (s.admin_port, UNSET))
    for args in (("stats",), ("clear", "--all"), ("get", "k"), ("warm", "--endpoints", "/")):
        r = cli(s, *args, "-c", str(cfg), token=ADMIN_TOKEN, admin=False)
        assert r.rc == 1, (args, r)
        r.one_error_line("strata %s: %s:3: environment variable %s is not set"
                         % (args[0], cfg, UNSET))
        assert r.out == b""


def test_token_rules_match_the_server(strata, cli, tmp_path):
    # Any printable ASCII but space, up to 128 bytes: the server accepts it as
    # admin.token and the CLI sends it.
    tok = "Zm9v+/==!#$%&()*,:;<>?@[]^_`{|}~" + "x" * 96
    assert len(tok) == 128
    s = strata(admin={"token": tok})
    assert cli(s, "stats", token=tok).rc == 0
    (cli.cwd / "strata-admin.token").write_text("  " + tok + "\n")
    assert cli(s, "stats", token=None).rc == 0  # trimmed, as before
    for bad, why in (("two words", "contains a space"), (tok + "y", "longer than 128 bytes")):
        r = cli(s, "stats", token=bad)
        assert r.rc == 1, r
        r.one_error_line("strata stats: the admin token in STRATA_ADMIN_TOKEN is not valid",
                         why, "printable ASCII without spaces")
        assert bad not in r.err  # a token is never shown
        (cli.cwd / "strata-admin.token").write_text(bad + "\n")
        r = cli(s, "stats", token=None)
        assert r.rc == 1, r
        r.one_error_line("the admin token in the token file strata-admin.token is not valid",
                         why)
    # admin.token of -c FILE: the configuration check, with the file and line.
    cfg = tmp_path / "spaced.yaml"
    cfg.write_text('admin:\n  listen: "127.0.0.1:%d"\n  token: "two words"\n'
                   % s.admin_port)
    for argv in (("stats", "-c", str(cfg)), ("check-config", "-c", str(cfg))):
        r = cli(None, *argv)
        assert r.rc == 1, r
        r.one_error_line("%s:3: admin.token: contains a space" % cfg)
        assert "two words" not in r.err


def test_wrong_token_is_unauthorized(strata, cli):
    s = strata()
    for args in (("stats",), ("clear", "--all"), ("get", "k"), ("warm", "--endpoints", "/")):
        r = cli(s, *args, token="wrong")
        assert r.rc == 1, (args, r)
        r.one_error_line("strata %s: unauthorized" % args[0], "STRATA_ADMIN_TOKEN")
        assert r.out == b""


def test_admin_unreachable(cli):
    port = free_ports(1)[0]
    for args in (("clear", "--all"), ("stats",), ("set", "k", "v")):
        r = cli(None, *args, "--admin", "http://127.0.0.1:%d" % port)
        assert r.rc == 1, r
        r.one_error_line("strata %s: admin 127.0.0.1:%d: connection refused"
                         % (args[0], port))


def test_no_token_anywhere(cli):
    r = cli(None, "stats", token=None)
    assert r.rc == 1, r
    r.one_error_line("STRATA_ADMIN_TOKEN", "strata-admin.token")


def test_token_file_in_cwd_and_env_wins(strata, cli):
    s = strata()
    (cli.cwd / "strata-admin.token").write_text(ADMIN_TOKEN + "\n")
    r = cli(s, "stats", token=None)
    assert r.rc == 0, r
    # STRATA_ADMIN_TOKEN wins over the file.
    r = cli(s, "stats", token="wrong")
    assert r.rc == 1 and "unauthorized" in r.err
    (cli.cwd / "strata-admin.token").write_text("wrong\n")
    assert cli(s, "stats", token=ADMIN_TOKEN).rc == 0


def test_config_names_the_admin_and_its_token(strata, cli):
    s = strata()
    r = cli(s, "set", "k", "from-config", "-c", str(s.config_path), token=None,
            admin=False)
    assert r.rc == 0, r
    assert cli(s, "get", "k").out == b"from-config"


def test_config_token_file(strata, cli, tmp_path):
    s = strata()
    tf = tmp_path / "admin.tok"
    tf.write_text(ADMIN_TOKEN + "\n")
    cfg = tmp_path / "cli.yaml"
    cfg.write_text('admin: { listen: "127.0.0.1:%d", token_file: "%s" }\n'
                   % (s.admin_port, tf))
    r = cli(s, "stats", "-c", str(cfg), token=None, admin=False)
    assert r.rc == 0, r
    r = cli(s, "stats", "-c", str(tmp_path / "missing.yaml"), admin=False)
    assert r.rc == 1
    r.one_error_line("missing.yaml")


def test_admin_url_forms(strata, cli):
    s = strata()
    for url in (s.admin, s.admin + "/", "127.0.0.1:%d" % s.admin_port,
                "http://localhost:%d" % s.admin_port):
        r = cli(s, "stats", "--json", "--admin", url, admin=False)
        assert r.rc == 0, (url, r)
    r = cli(s, "stats", "--admin", "https://127.0.0.1:%d" % s.admin_port, admin=False)
    assert r.rc == 2
    r.one_error_line("--admin")


# ---- output that cannot be written ---------------------------------------------------

def _to_dev_full(build_dir, cwd, *args):
    """Run strata ARGS with stdout on /dev/full (every write fails ENOSPC)."""
    with open("/dev/full", "wb") as full:
        p = subprocess.run([str(build_dir / "strata"), *args], stdout=full,
                           stderr=subprocess.PIPE, timeout=60, env=_env(ADMIN_TOKEN),
                           cwd=str(cwd))
    err = p.stderr.decode(errors="replace")
    _no_sanitizer_report(err)
    return p.returncode, err


@pytest.mark.parametrize("args", [
    ("stats", "--json"),
    ("stats",),
    ("clear", "--all", "--json"),
    ("clear", "--all"),
    ("warm", "--endpoints", "/full", "--json"),
    ("warm", "--endpoints", "/full"),
    ("get", "k"),
    ("stats", "--watch", "--interval", "100ms"),  # the first screen fails: exit
])
def test_stdout_write_error_exits_1(origin, strata, build_dir, cli, args):
    origin.route("/full", headers=CC60, body=b"x")
    s = strata()
    assert cli(s, "set", "k", "v").rc == 0
    rc, err = _to_dev_full(build_dir, cli.cwd, args[0], "--admin", s.admin, *args[1:])
    assert rc == 1, (args, err)
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("strata %s: " % args[0]), err
    assert "stdout" in err, err


# ---- usage errors (no strata needed) ----------------------------------------------

@pytest.mark.parametrize("args,words", [
    (("clear",), ["--all", "--pattern", "--tag"]),
    (("clear", "--all", "--tag", "x"), ["--all"]),
    (("clear", "--bogus"), ["unknown option '--bogus'"]),
    (("clear", "--cache"), ["--cache needs a value"]),
    (("clear", "--all", "--all"), ["--all given twice"]),
    # Not UTF-8: it cannot go into the JSON body, and leaving it out would
    # clear more (every cache, instead of the one named).
    (("clear", "--all", "--cache", "s\udcffx"), ["--cache", "not valid UTF-8"]),
    (("clear", "--tag", "a", "b\udcff"), ["--tag", "not valid UTF-8"]),
    (("clear", "--all", "extra"), ["unexpected argument 'extra'"]),
    (("get",), ["missing KEY"]),
    (("del",), ["missing KEY"]),
    (("set", "k"), ["missing VALUE"]),
    (("get", "k", "--ttl", "5s"), ["unknown option '--ttl'"]),
    (("set", "k", "v", "--ttl", "300"), ["--ttl", "300"]),
    (("set", "k", "v", "--tags", "a,,b"), ["--tags"]),
    (("warm",), ["--endpoints", "--file"]),
    (("warm", "--endpoints", "/a", "--file", "f"), ["not both"]),
    (("warm", "--endpoints", "/a", "--concurrency", "0"), ["--concurrency"]),
    (("warm", "--endpoints", "/a", "--concurrency", "65"), ["--concurrency", "1 to 64"]),
    (("warm", "--endpoints"), ["--endpoints needs a value"]),
    (("stats", "--interval", "1s"), ["--interval needs --watch"]),
    (("stats", "--watch", "--interval", "0s"), ["--interval"]),
    (("stats", "--admin", "ftp://x:1"), ["--admin"]),
])
def test_usage_errors_exit_2_with_one_line(cli, args, words):
    r = cli(None, *args)
    assert r.rc == 2, r
    r.one_error_line("strata %s:" % args[0], *words)
    assert r.out == b""
