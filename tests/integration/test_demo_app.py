"""The demo of `make run`: examples/demo/app.py alone, then behind
`strata serve -c examples/strata.yaml`.

The origin runs on a port it picks (--port 0, read from its first log line);
strata gets a free --listen port and --upstream, and a copy of
examples/strata.yaml whose admin port is rewritten (8081 may be taken). The
origin logs one line per request *before* it answers, so the log counts how
many requests reached it.
"""
import http.client
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "demo" / "app.py"
CONFIG = ROOT / "examples" / "strata.yaml"
STATIC = ROOT / "examples" / "demo" / "static"
START_TIMEOUT = 10.0


# -- helpers ---------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Resp:
    def __init__(self, status, headers, body, elapsed):
        self.status, self.headers, self.body, self.elapsed = status, headers, body, elapsed

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %s %r>" % (self.status, dict(self.headers), self.body[:200])


def fetch(port, path, method="GET", headers=None, body=None, conn=None):
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    t0 = time.monotonic()
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    elapsed = time.monotonic() - t0
    if own:
        conn.close()
    return Resp(r.status, r.headers, data, elapsed)


class Proc:
    """A child process with its output in files; stop() sends SIGTERM."""

    def __init__(self, name, argv, tmp, env=None, cwd=None):
        self.name = name
        self.out_path = tmp / (name + ".out")
        self.err_path = tmp / (name + ".err")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                      env=env, cwd=cwd)

    def output(self):
        return "--- %s stdout:\n%s\n--- %s stderr:\n%s" % (
            self.name, self.out_path.read_text(errors="replace")[-4000:],
            self.name, self.err_path.read_text(errors="replace")[-4000:])

    def wait_until(self, what, cond, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not cond():
            if self.p.poll() is not None:
                pytest.fail("%s exited (status %s) before %s\n%s"
                            % (self.name, self.p.returncode, what, self.output()))
            if time.monotonic() > deadline:
                pytest.fail("%s: no %s after %.0f s\n%s" % (self.name, what, timeout, self.output()))
            time.sleep(0.05)

    def stop(self, timeout=15):
        """SIGTERM, wait (bounded); the exit status, or None if it had to be killed."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                return None
        return self.p.returncode


class Origin(Proc):
    def __init__(self, tmp):
        super().__init__("origin", [sys.executable, str(APP), "--port", "0"], tmp)
        found = []

        def listening():
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", self.err_path.read_text())
            if m:
                found.append(int(m.group(1)))
            return bool(found)

        self.wait_until("'listening on' line", listening)
        self.port = found[0]
        self.wait_until("listener on port %d" % self.port, lambda: port_open(self.port))

    def requests(self, method, target):
        """How many `METHOD TARGET` requests reached the origin so far."""
        line = "origin: %s %s " % (method, target)
        return sum(1 for l in self.err_path.read_text().splitlines() if l.startswith(line))


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    o = Origin(tmp_path_factory.mktemp("origin"))
    yield o
    rc = o.stop()
    assert rc == 0, "demo origin: exit status %s after SIGTERM\n%s" % (rc, o.output())


class Strata(Proc):
    def __init__(self, build_dir, tmp, origin):
        self.port = free_port()
        self.admin_port = free_port()
        text = CONFIG.read_text()
        assert text.count('"127.0.0.1:8081"') == 1, "examples/strata.yaml: admin.listen moved?"
        cfg = tmp / "strata.yaml"
        cfg.write_text(text.replace('"127.0.0.1:8081"', '"127.0.0.1:%d"' % self.admin_port))
        env = dict(os.environ, STRATA_TEST_CLOCK="1")
        super().__init__("strata", [
            str((build_dir / "strata").resolve()), "serve", "-c", str(cfg),
            "--listen", "127.0.0.1:%d" % self.port,
            "--upstream", "http://127.0.0.1:%d" % origin.port,
        ], tmp, env=env, cwd=tmp)
        self.tmp = tmp
        self.wait_until("listener on port %d" % self.port, lambda: port_open(self.port))

    def get(self, path, **kw):
        return fetch(self.port, path, **kw)

    def admin_token(self):
        """The generated admin token (examples/strata.yaml sets none)."""
        f = self.tmp / "strata-admin.token"
        self.wait_until("admin token file %s" % f, f.exists)
        return f.read_text().strip()

    def advance_clock(self, ms):
        self.wait_until("admin listener on port %d" % self.admin_port,
                        lambda: port_open(self.admin_port))
        r = fetch(self.admin_port, "/_strata/debug/clock", method="POST",
                  body=json.dumps({"advance_ms": ms}),
                  headers={"Authorization": "Bearer " + self.admin_token(),
                           "Content-Type": "application/json"})
        assert r.status == 200, (r, self.output())


@pytest.fixture
def strata(build_dir, tmp_path, origin):
    s = Strata(build_dir, tmp_path, origin)
    yield s
    rc = s.stop()
    assert rc == 0, "strata: exit status %s after SIGTERM\n%s" % (rc, s.output())


def cache_status(r):
    """strata's member of Cache-Status (it comes after any the origin sent)."""
    value = r.headers.get("Cache-Status")
    assert value, "no Cache-Status: %r" % r
    members = [m.strip() for m in value.split(",") if m.strip().startswith("strata")]
    assert members, "no strata member in Cache-Status %r" % value
    return members[-1]


def is_hit(r):
    return re.match(r"strata; hit(;|$)", cache_status(r)) is not None and "ttl=-" not in cache_status(r)


def hit_ttl(r):
    m = re.search(r"; ttl=(-?\d+)", cache_status(r))
    assert m, "no ttl in %r" % cache_status(r)
    return int(m.group(1))


def is_miss(r):
    return "fwd=uri-miss" in cache_status(r) or "fwd=vary-miss" in cache_status(r)


# -- the origin alone --------------------------------------------------------


def test_app_index_lists_the_endpoints(origin):
    r = fetch(origin.port, "/")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/html")
    page = r.body.decode()
    for path in ("/api/products", "/api/products/1", "/api/me", "/api/config/",
                 "/static/app.css", "/static/logo.svg", "/admin/"):
        assert 'href="%s"' % path in page


def test_app_products_is_slow_public_and_tagged(origin):
    r = fetch(origin.port, "/api/products")
    assert r.status == 200 and r.elapsed >= 0.3
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Cache-Control"] == "public, max-age=60"
    assert "Vary" not in r.headers  # the route's vary_headers add it
    items = r.json()
    assert isinstance(items, list) and len(items) >= 4
    assert r.headers["Surrogate-Key"].split() == ["products"] + ["product-%d" % p["id"] for p in items]
    assert items[0]["name"] == "Desk lamp" and r.headers["Content-Language"] == "en"


def test_app_products_category_and_language(origin):
    r = fetch(origin.port, "/api/products?category=lighting",
              headers={"Accept-Language": "fr-CH, fr;q=0.9, en;q=0.8"})
    items = r.json()
    assert [p["category"] for p in items] == ["lighting"] * len(items) and items
    assert r.headers["Surrogate-Key"].split() == ["products"] + ["product-%d" % p["id"] for p in items]
    assert r.headers["Content-Language"] == "fr" and items[0]["name"] == "Lampe de bureau"
    r = fetch(origin.port, "/api/products?category=nothing")
    assert r.status == 200 and r.json() == [] and r.headers["Surrogate-Key"] == "products"


def test_app_product_item(origin):
    r = fetch(origin.port, "/api/products/1")
    assert r.status == 200 and r.json()["id"] == 1
    assert r.headers["Surrogate-Key"] == "product-1"
    assert r.headers["Cache-Control"] == "public, max-age=60"
    assert fetch(origin.port, "/api/products/999").status == 404
    assert fetch(origin.port, "/api/products/abc").status == 404
    r = fetch(origin.port, "/api/products/1", method="DELETE")
    assert r.status == 405 and "POST" in r.headers["Allow"]


def test_app_post_changes_the_price(origin):
    r = fetch(origin.port, "/api/products/2", method="POST", body=json.dumps({"price": 12.5}),
              headers={"Content-Type": "application/json"})
    assert r.status == 200 and r.json()["price"] == 12.5
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Cache-Group-Invalidation"] == '"product-2"'
    assert fetch(origin.port, "/api/products/2").json()["price"] == 12.5
    r = fetch(origin.port, "/api/products/2", method="POST", body="price=13.25",
              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200 and r.json()["price"] == 13.25
    for bad in ("price=-1", "price=abc", "{", "x=1"):
        assert fetch(origin.port, "/api/products/2", method="POST", body=bad).status == 400
    assert fetch(origin.port, "/api/products/2").json()["price"] == 13.25


def test_app_post_with_a_chunked_body_keeps_the_connection(origin):
    with socket.create_connection(("127.0.0.1", origin.port), timeout=10) as s:
        s.sendall(b"POST /api/products/2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
                  b"6\r\nprice=\r\n4\r\n14.5\r\n0\r\n\r\n"
                  b"GET /api/products/2 HTTP/1.1\r\nHost: x\r\n\r\n")
        f = s.makefile("rb")
        bodies = []
        for _ in range(2):
            assert f.readline().startswith(b"HTTP/1.1 200")
            length = None
            while True:
                line = f.readline()
                if line in (b"\r\n", b""):
                    break
                k, _, v = line.decode().partition(":")
                if k.lower() == "content-length":
                    length = int(v)
            bodies.append(json.loads(f.read(length)))
    assert bodies[0]["price"] == 14.5 and bodies[1]["price"] == 14.5


def test_app_me_needs_a_bearer_name(origin):
    r = fetch(origin.port, "/api/me")
    assert r.status == 401 and "WWW-Authenticate" in r.headers
    assert fetch(origin.port, "/api/me", headers={"Authorization": "Basic YTpi"}).status == 401
    r = fetch(origin.port, "/api/me", headers={"Authorization": "Bearer alice"})
    assert r.status == 200 and r.json()["user"] == "alice"
    assert r.headers["Cache-Control"] == "private, max-age=30"


def test_app_config_says_nothing_about_freshness(origin):
    r = fetch(origin.port, "/api/config/")
    assert r.status == 200 and "features" in r.json()
    for h in ("Cache-Control", "Expires", "ETag", "Last-Modified", "Vary"):
        assert h not in r.headers


def test_app_static_files_have_validators(origin):
    r = fetch(origin.port, "/static/app.css")
    assert r.status == 200 and r.body == (STATIC / "app.css").read_bytes()
    assert r.headers["Content-Type"].startswith("text/css")
    assert "Cache-Control" not in r.headers
    etag, lm = r.headers["ETag"], r.headers["Last-Modified"]
    assert re.fullmatch(r'"[0-9a-f]+"', etag) and lm.endswith("GMT")
    r304 = fetch(origin.port, "/static/app.css", headers={"If-None-Match": '"x", ' + etag})
    assert r304.status == 304 and r304.body == b"" and r304.headers["ETag"] == etag
    assert fetch(origin.port, "/static/app.css", headers={"If-None-Match": "W/" + etag}).status == 304
    assert fetch(origin.port, "/static/app.css", headers={"If-None-Match": '"other"'}).status == 200
    assert fetch(origin.port, "/static/app.css", headers={"If-Modified-Since": lm}).status == 304
    assert fetch(origin.port, "/static/app.css",
                 headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}).status == 200
    svg = fetch(origin.port, "/static/logo.svg")
    assert svg.status == 200 and svg.headers["Content-Type"] == "image/svg+xml"
    for bad in ("/static/missing.css", "/static/..%2fapp.py", "/static/../app.py", "/static/.x"):
        assert fetch(origin.port, bad).status == 404, bad


def test_app_admin_page(origin):
    r = fetch(origin.port, "/admin/")
    assert r.status == 200 and b"<h1>Admin</h1>" in r.body
    r = fetch(origin.port, "/admin")
    assert r.status == 301 and r.headers["Location"] == "/admin/"


def test_app_keep_alive_content_length_and_origin_time(origin):
    conn = http.client.HTTPConnection("127.0.0.1", origin.port, timeout=10)
    try:
        for method, path, status in [("GET", "/", 200), ("GET", "/nowhere", 404),
                                     ("HEAD", "/api/products/1", 200),
                                     ("PURGE", "/api/products", 405),
                                     ("GET", "/api/me", 401), ("GET", "/static/logo.svg", 200)]:
            r = fetch(origin.port, path, method=method, conn=conn)
            assert r.status == status, (method, path, r)
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r.headers["X-Origin-Time"])
            assert r.headers.get("Connection") != "close"
            if method == "HEAD":
                assert r.body == b""
                assert int(r.headers["Content-Length"]) == len(fetch(origin.port, path).body)
            else:
                assert int(r.headers["Content-Length"]) == len(r.body)
    finally:
        conn.close()


def test_app_logs_one_line_per_request(origin):
    before = origin.requests("GET", "/api/config/?log-test")
    fetch(origin.port, "/api/config/?log-test")
    assert origin.requests("GET", "/api/config/?log-test") == before + 1


def test_app_port_in_use_and_sigterm(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        p = subprocess.run([sys.executable, str(APP), "--port", str(s.getsockname()[1])],
                           capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "cannot listen" in p.stderr
    o = Origin(tmp_path)
    assert o.stop() == 0 and "demo origin stopped" in o.err_path.read_text()


# -- strata in front of it -------------------------------------------------------


def test_example_config_is_valid(strata_cmd):
    strata_cmd("check-config", "-c", str(CONFIG), check=0)


def test_products_miss_then_hit(strata, origin):
    before = origin.requests("GET", "/api/products")
    miss = strata.get("/api/products")
    assert miss.status == 200, miss
    assert "fwd=uri-miss" in cache_status(miss) and "stored" in cache_status(miss), miss
    assert miss.elapsed >= 0.3
    assert "Surrogate-Key" not in miss.headers  # tag headers are stripped
    hit = strata.get("/api/products")
    assert hit.status == 200 and is_hit(hit), hit
    assert 0 < hit_ttl(hit) <= 60  # the origin's max-age=60 wins over the route's 10m
    assert hit.elapsed < 0.2, "a hit took %.3f s" % hit.elapsed
    assert hit.body == miss.body
    assert hit.headers["X-Origin-Time"] == miss.headers["X-Origin-Time"]
    assert origin.requests("GET", "/api/products") == before + 1


def test_products_expire_after_the_origin_max_age(strata, origin):
    before = origin.requests("GET", "/api/products/1")
    assert is_miss(strata.get("/api/products/1"))
    strata.advance_clock(59_000)
    assert is_hit(strata.get("/api/products/1"))
    strata.advance_clock(2_000)
    r = strata.get("/api/products/1")
    assert r.status == 200 and not is_hit(r), r
    assert origin.requests("GET", "/api/products/1") == before + 2


def test_products_vary_on_accept_language(strata, origin):
    url = "/api/products?category=furniture"
    fr = {"Accept-Language": "fr"}
    en = {"Accept-Language": "en-GB"}
    r1 = strata.get(url, headers=fr)
    assert "fwd=uri-miss" in cache_status(r1) and r1.headers["Content-Language"] == "fr"
    r2 = strata.get(url, headers=en)
    assert "fwd=vary-miss" in cache_status(r2), r2
    assert r2.headers["Content-Language"] == "en"
    r3 = strata.get(url, headers=fr)
    r4 = strata.get(url, headers=en)
    assert is_hit(r3) and r3.body == r1.body
    assert is_hit(r4) and r4.body == r2.body and r4.body != r1.body
    assert origin.requests("GET", url) >= 2


def test_config_route_ttl_is_an_hour(strata, origin):
    miss = strata.get("/api/config/")
    assert "fwd=uri-miss" in cache_status(miss) and "stored" in cache_status(miss), miss
    hit = strata.get("/api/config/")
    assert is_hit(hit) and hit.body == miss.body
    assert 3590 <= hit_ttl(hit) <= 3600, cache_status(hit)


def test_per_user_profiles_are_never_shared(strata, origin):
    users = ("alice", "bob")
    before = origin.requests("GET", "/api/me")
    for round_ in range(2):
        for u in users:
            r = strata.get("/api/me", headers={"Authorization": "Bearer " + u})
            assert r.status == 200 and r.json()["user"] == u, (u, r)
            assert is_hit(r) == (round_ == 1), (u, round_, cache_status(r))
    assert origin.requests("GET", "/api/me") == before + 2
    # No identity, or another one: never someone else's copy.
    r = strata.get("/api/me")
    assert r.status == 401 and b"alice" not in r.body and b"bob" not in r.body
    r = strata.get("/api/me", headers={"Authorization": "Bearer mallory"})
    assert r.status == 200 and r.json()["user"] == "mallory" and not is_hit(r)


def test_purge_then_miss(strata, origin):
    assert is_miss(strata.get("/api/products"))
    assert is_hit(strata.get("/api/products"))
    purges = origin.requests("PURGE", "/api/products")
    r = strata.get("/api/products", method="PURGE")
    assert r.status == 200, r
    assert r.json().get("removed", 0) >= 1, r
    assert origin.requests("PURGE", "/api/products") == purges  # answered by strata
    before = origin.requests("GET", "/api/products")
    r = strata.get("/api/products")
    assert "fwd=uri-miss" in cache_status(r), r
    assert origin.requests("GET", "/api/products") == before + 1


def test_post_invalidates_the_product_and_the_lists(strata, origin):
    item, lst = "/api/products/3", "/api/products?category=furniture"
    assert is_miss(strata.get(item)) and is_hit(strata.get(item))
    assert is_miss(strata.get(lst)) and is_hit(strata.get(lst))
    old = strata.get(item).json()["price"]
    new = old + 1
    r = strata.get(item, method="POST", body="price=%s" % new,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200 and r.json()["price"] == new
    # The unsafe method invalidates its URL...
    r = strata.get(item)
    assert not is_hit(r) and r.json()["price"] == new, cache_status(r)
    # ... and the response's Cache-Group-Invalidation the lists tagged product-3.
    r = strata.get(lst)
    assert not is_hit(r), cache_status(r)
    assert [p["price"] for p in r.json() if p["id"] == 3] == [new]


def test_admin_is_never_cached(strata, origin):
    before = origin.requests("GET", "/admin/")
    for _ in range(2):
        r = strata.get("/admin/")
        assert r.status == 200 and "fwd=bypass" in cache_status(r), r
    assert origin.requests("GET", "/admin/") == before + 2


def test_static_route_cache_control(strata, origin):
    miss = strata.get("/static/app.css")
    assert miss.status == 200 and miss.body == (STATIC / "app.css").read_bytes()
    assert miss.headers["Cache-Control"] == "public, max-age=2592000, immutable"
    hit = strata.get("/static/app.css")
    assert is_hit(hit) and hit.headers["Cache-Control"] == "public, max-age=2592000, immutable"
    assert 29 * 86400 < hit_ttl(hit) <= 30 * 86400, cache_status(hit)
    before = origin.requests("GET", "/static/app.css")
    r = strata.get("/static/app.css", headers={"If-None-Match": miss.headers["ETag"]})
    assert r.status == 304 and r.body == b"", r  # answered from the stored object
    assert origin.requests("GET", "/static/app.css") == before
