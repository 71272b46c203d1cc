#!/usr/bin/env python3
"""The demo origin behind `make run`: a tiny shop API that shows what strata does.

    python3 examples/demo/app.py --port 8000 [--host 127.0.0.1]

Python 3 standard library only. HTTP/1.1 with a Content-Length on every response
that has a body, so strata's upstream keep-alive pool can reuse connections. Every
response carries `X-Origin-Time` (when this process produced it): a response that
comes from strata's cache shows an older time than the request. One line per
request goes to stderr, written before the response, so a test that has the
response also has the log line.

Endpoints (the routes of examples/strata.yaml in brackets):

  GET  /                    this list, as HTML (not cached: no freshness)
  GET  /api/products        slow (300 ms) JSON list; public, max-age=60;
                            Surrogate-Key: products product-1 ...; ?category=;
                            names follow Accept-Language (en, fr), no Vary sent
                            [products: vary_headers Accept-Language adds it]
  GET  /api/products/ID     one product; Surrogate-Key: product-ID
  POST /api/products/ID     new price (JSON {"price": 12.5} or form price=12.5);
                            strata invalidates the URL, and the response's
                            Cache-Group-Invalidation: "product-ID" the lists
  GET  /api/me              the caller, from Authorization: Bearer NAME;
                            private, max-age=30; 401 without it
                            [me: per_user, one cached copy per user]
  GET  /api/config/         site configuration, no Cache-Control at all
                            [config: ttl 1h]
  GET  /static/FILE         examples/demo/static/, with ETag and Last-Modified,
                            If-None-Match / If-Modified-Since -> 304
                            [static: ttl 30d, cache_control immutable]
  GET  /admin/              claims public, max-age=3600, but must never be cached
                            [admin: cache false]
"""
import argparse
import email.utils
import hashlib
import html
import json
import mimetypes
import pathlib
import re
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"
LIST_DELAY_S = 0.3

# Prices are in cents; names per language. Guarded by LOCK (POST changes prices).
PRODUCTS = {
    1: {"category": "lighting", "price": 3900, "name": {"en": "Desk lamp", "fr": "Lampe de bureau"}},
    2: {"category": "lighting", "price": 8900, "name": {"en": "Floor lamp", "fr": "Lampadaire"}},
    3: {"category": "furniture", "price": 34900, "name": {"en": "Oak desk", "fr": "Bureau en chêne"}},
    4: {"category": "furniture", "price": 19900, "name": {"en": "Office chair", "fr": "Chaise de bureau"}},
    5: {"category": "stationery", "price": 450, "name": {"en": "Notebook", "fr": "Carnet"}},
    6: {"category": "stationery", "price": 2400, "name": {"en": "Fountain pen", "fr": "Stylo plume"}},
}
LANGUAGES = ("en", "fr")
LOCK = threading.Lock()
LOG_LOCK = threading.Lock()
USER_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
STATIC_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")

ENDPOINTS = [
    ("GET", "/api/products", "slow product list (300 ms), public, max-age=60, tagged; ?category=lighting"),
    ("GET", "/api/products/1", "one product, tagged product-1"),
    ("POST", "/api/products/1", "change its price: -d price=19.99 (strata invalidates it)"),
    ("GET", "/api/me", "per-user profile: -H 'Authorization: Bearer alice'"),
    ("GET", "/api/config/", "site configuration, no Cache-Control (strata.yaml gives it 1h)"),
    ("GET", "/static/app.css", "static file with ETag and Last-Modified"),
    ("GET", "/static/logo.svg", "static file"),
    ("GET", "/admin/", "never cached (route cache: false)"),
]


class BadRequest(Exception):
    pass


def now_iso():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000)


def pick_language(header):
    """The best of LANGUAGES for an Accept-Language value (default en)."""
    best, best_q = "en", -1.0
    for part in (header or "").split(","):
        fields = part.strip().split(";")
        tag = fields[0].strip().lower()
        q = 1.0
        for f in fields[1:]:
            k, _, v = f.strip().partition("=")
            if k.strip() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        lang = tag.split("-")[0]
        if lang in LANGUAGES and q > 0 and q > best_q:
            best, best_q = lang, q
    return best


def product_json(pid, p, lang):
    return {
        "id": pid,
        "name": p["name"][lang],
        "category": p["category"],
        "price": p["price"] / 100,
        "currency": "EUR",
    }


def parse_price(body, content_type):
    text = body.decode("utf-8", "replace").strip()
    if "json" in content_type or text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            raise BadRequest("body is not valid JSON")
        value = doc.get("price") if isinstance(doc, dict) else None
    else:
        value = (urllib.parse.parse_qs(text).get("price") or [None])[0]
    try:
        price = float(value)
    except (TypeError, ValueError):
        raise BadRequest('give a price: {"price": 12.5} or price=12.5')
    if not 0 < price < 1e6:
        raise BadRequest("price must be between 0 and 1000000")
    return round(price * 100)


def etag_of(data):
    return '"%s"' % hashlib.sha256(data).hexdigest()[:20]


def etag_matches(header, etag):
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2)."""
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag.removeprefix("W/"):
            return True
    return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "strata-demo-origin/1.0"

    def version_string(self):
        return self.server_version

    # -- plumbing ---------------------------------------------------------

    def read_body(self):
        """The request body, by Content-Length or chunked; b"" when there is none."""
        te = self.headers.get("Transfer-Encoding", "")
        if te:
            if te.strip().lower() != "chunked":
                raise BadRequest("unsupported Transfer-Encoding")
            chunks = []
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BadRequest("bad chunk size")
                if size == 0:
                    break
                if size > 1 << 20:
                    raise BadRequest("chunk too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
            while self.rfile.readline(8192).strip():  # trailers
                pass
            return b"".join(chunks)
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""
        try:
            n = int(cl)
        except ValueError:
            raise BadRequest("bad Content-Length")
        if n < 0 or n > 1 << 20:
            raise BadRequest("bad Content-Length")
        return self.rfile.read(n)

    def respond(self, status, body=b"", ctype="application/json", headers=()):
        """Send one whole response; logs it first (see the module docstring)."""
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            body = (json.dumps(body, ensure_ascii=False, indent=None) + "\n").encode()
        head_only = self.command == "HEAD"
        no_body = status == 304 or status < 200
        self.log_line(status, 0 if no_body else len(body))
        self.send_response(status)
        self.send_header("X-Origin-Time", now_iso())
        if not no_body:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head_only and not no_body:
            self.wfile.write(body)

    def error(self, status, message, headers=()):
        self.respond(status, {"error": message, "status": status}, headers=headers)

    def log_line(self, status, size):
        ms = (time.monotonic() - self.t0) * 1000
        line = "origin: %s %s %d %dB %.1fms\n" % (self.command, self.path, status, size, ms)
        with LOG_LOCK:
            sys.stderr.write(line)
            sys.stderr.flush()

    def log_request(self, code="-", size="-"):
        pass  # respond() logs its own line

    def log_message(self, fmt, *args):  # errors of http.server (bad request lines)
        with LOG_LOCK:
            sys.stderr.write("origin: %s\n" % (fmt % args))
            sys.stderr.flush()

    # -- dispatch ---------------------------------------------------------

    ROUTES = [
        (re.compile(r"/"), "index", ("GET", "HEAD")),
        (re.compile(r"/api/products/?"), "products", ("GET", "HEAD")),
        (re.compile(r"/api/products/(\d{1,9})"), "product", ("GET", "HEAD", "POST")),
        (re.compile(r"/api/me"), "me", ("GET", "HEAD")),
        (re.compile(r"/api/config/"), "config", ("GET", "HEAD")),
        (re.compile(r"/static/(.*)"), "static", ("GET", "HEAD")),
        (re.compile(r"/admin"), "admin_redirect", ("GET", "HEAD")),
        (re.compile(r"/admin/"), "admin", ("GET", "HEAD")),
    ]

    def dispatch(self):
        self.t0 = time.monotonic()
        try:
            body = self.read_body()
        except BadRequest as e:
            self.close_connection = True
            self.error(400, str(e))
            return
        url = urllib.parse.urlsplit(self.path)
        self.query = urllib.parse.parse_qs(url.query)
        for pattern, name, methods in self.ROUTES:
            m = pattern.fullmatch(url.path)
            if m is None:
                continue
            if self.command not in methods:
                self.error(405, "method not allowed", headers=[("Allow", ", ".join(methods))])
                return
            try:
                getattr(self, "do_" + name)(*m.groups(), body=body)
            except BadRequest as e:
                self.error(400, str(e))
            return
        self.error(404, "not found")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_PURGE = dispatch

    # -- endpoints --------------------------------------------------------

    def do_index(self, body):
        rows = "\n".join(
            '<tr><td>%s</td><td><a href="%s">%s</a></td><td>%s</td></tr>'
            % (m, html.escape(p), html.escape(p), html.escape(d))
            for m, p, d in ENDPOINTS
        )
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>strata demo origin</title>
<link rel="stylesheet" href="/static/app.css"></head>
<body><header><img src="/static/logo.svg" alt="" width="40" height="40">
<h1>strata demo origin</h1></header>
<p>A small shop API. Ask it through strata (<code>make run</code>: http://127.0.0.1:8080/)
and watch the <code>Cache-Status</code> and <code>X-Origin-Time</code> response headers.</p>
<table><tr><th>method</th><th>path</th><th>what it shows</th></tr>
{rows}
</table>
<p class="time">Generated by the origin at {now_iso()}</p>
</body></html>
"""
        self.respond(200, page, "text/html; charset=utf-8")

    def do_products(self, body):
        time.sleep(LIST_DELAY_S)  # a slow database query: a miss costs 300 ms, a hit does not
        lang = pick_language(self.headers.get("Accept-Language"))
        category = (self.query.get("category") or [""])[0].lower()
        with LOCK:
            items = [
                product_json(pid, p, lang)
                for pid, p in sorted(PRODUCTS.items())
                if not category or p["category"] == category
            ]
        keys = " ".join(["products"] + ["product-%d" % p["id"] for p in items])
        # No Vary: Accept-Language here, on purpose: the `products` route of
        # strata.yaml adds it (vary_headers), as for an origin that forgets it.
        self.respond(200, items, headers=[
            ("Cache-Control", "public, max-age=60"),
            ("Surrogate-Key", keys),
            ("Content-Language", lang),
        ])

    def do_product(self, pid, body):
        pid = int(pid)
        lang = pick_language(self.headers.get("Accept-Language"))
        with LOCK:
            p = PRODUCTS.get(pid)
            if p is None:
                self.error(404, "no product %d" % pid)
                return
            if self.command == "POST":
                p["price"] = parse_price(body, self.headers.get("Content-Type", ""))
            doc = product_json(pid, p, lang)
        if self.command == "POST":
            # strata invalidates this URL after a 2xx to an unsafe method; the
            # lists that contain the product carry its tag: invalidate that too.
            self.respond(200, doc, headers=[
                ("Cache-Control", "no-store"),
                ("Cache-Group-Invalidation", '"product-%d"' % pid),
            ])
            return
        self.respond(200, doc, headers=[
            ("Cache-Control", "public, max-age=60"),
            ("Surrogate-Key", "product-%d" % pid),
            ("Content-Language", lang),
        ])

    def do_me(self, body):
        auth = self.headers.get("Authorization", "")
        scheme, _, name = auth.partition(" ")
        name = name.strip()
        if scheme.lower() != "bearer" or not USER_RE.fullmatch(name):
            self.error(401, "send Authorization: Bearer <name>", headers=[
                ("WWW-Authenticate", 'Bearer realm="strata-demo"'),
                ("Cache-Control", "no-store"),
            ])
            return
        digest = hashlib.sha256(name.encode()).digest()
        profile = {
            "user": name,
            "greeting": "Hello, %s!" % name,
            "cart_items": digest[0] % 5,
            "generated_at": now_iso(),
        }
        self.respond(200, profile, headers=[("Cache-Control", "private, max-age=30")])

    def do_config(self, body):
        # No Cache-Control, Expires or validators: strata's `config` route gives it 1h.
        self.respond(200, {
            "currency": "EUR",
            "languages": list(LANGUAGES),
            "features": {"new_checkout": True, "recommendations": False},
            "generated_at": now_iso(),
        })

    def do_static(self, name, body):
        path = STATIC_DIR / name
        if not STATIC_NAME_RE.fullmatch(name) or not path.is_file():
            self.error(404, "not found")
            return
        data = path.read_bytes()
        mtime = int(path.stat().st_mtime)
        etag = etag_of(data)
        validators = [
            ("ETag", etag),
            ("Last-Modified", email.utils.formatdate(mtime, usegmt=True)),
        ]
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        not_modified = False
        if inm is not None:
            not_modified = etag_matches(inm, etag)
        elif ims is not None:
            try:
                not_modified = mtime <= email.utils.parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError):
                pass
        if not_modified:
            self.respond(304, headers=validators)
            return
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/"):
            ctype += "; charset=utf-8"
        # No Cache-Control: strata's `static` route stores it 30 days and writes
        # its own cache_control to the client.
        self.respond(200, data, ctype, headers=validators)

    def do_admin_redirect(self, body):
        self.respond(301, {"location": "/admin/"}, headers=[
            ("Location", "/admin/"), ("Cache-Control", "no-store")])

    def do_admin(self, body):
        with LOCK:
            rows = "\n".join(
                "<tr><td>%d</td><td>%s</td><td>%.2f</td></tr>"
                % (pid, html.escape(p["name"]["en"]), p["price"] / 100)
                for pid, p in sorted(PRODUCTS.items())
            )
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>demo admin</title>
<link rel="stylesheet" href="/static/app.css"></head>
<body><h1>Admin</h1>
<p>Live data: this page is never cached (route <code>cache: false</code>), even
though it says <code>Cache-Control: public, max-age=3600</code>.</p>
<table><tr><th>id</th><th>product</th><th>price</th></tr>
{rows}
</table>
<p class="time">Generated by the origin at {now_iso()}</p>
</body></html>
"""
        # A careless header, on purpose: the route's `cache: false` wins over it.
        self.respond(200, page, "text/html; charset=utf-8",
                     headers=[("Cache-Control", "public, max-age=3600")])


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main(argv=None):
    ap = argparse.ArgumentParser(description="strata demo origin")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    ap.add_argument("--port", type=int, default=8000, help="port (8000; 0 picks a free one)")
    args = ap.parse_args(argv)
    try:
        server = Server((args.host, args.port), Handler)
    except OSError as e:
        print("demo origin: cannot listen on %s:%d: %s" % (args.host, args.port, e.strerror or e),
              file=sys.stderr)
        return 1

    stopping = []

    def stop(signum, frame):
        # Once: Ctrl-C under run-demo brings SIGINT and then SIGTERM.
        if not stopping:
            stopping.append(signum)
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print("demo origin listening on http://%s:%d/" % (host, port), file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except SystemExit:
        pass
    finally:
        server.server_close()
    print("demo origin stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
