"""The admin web page, GET /_strata/ui on the admin listener.

The page is src/admin/ui/index.html, built into the binary (src/admin/ui.c):
one self-contained file that loads nothing from elsewhere and calls the admin
API with the token typed into it. The browser tests drive it in headless
Chromium (Debian's chromium) through playwright-core
(tests/browser/ui_test.mjs): they fail, never skip, when either is missing,
since `make test` runs scripts/install-deps first, which installs both.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest
import requests

from proxyutil import ADMIN_TOKEN, cache_status, cs_params

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGE_SRC = ROOT / "src" / "admin" / "ui" / "index.html"
BROWSER_DIR = ROOT / "tests" / "browser"
UI_TEST = BROWSER_DIR / "ui_test.mjs"
CHROMIUM = os.environ.get("STRATA_CHROMIUM", "/usr/bin/chromium")
NODE_TIMEOUT = 120  # the script bounds each step itself (15 s); this bounds the whole run

CC300_TAGGED = {"Cache-Control": "max-age=300", "Surrogate-Key": "t1"}
ROUTES = [{"path": "/ui/*", "name": "ui"}]


def _hit(r):
    return "hit" in cs_params(cache_status(r))


def _require_browser():
    """Fail (not skip) with what to install when the browser test cannot run."""
    missing = []
    if shutil.which("node") is None:
        missing.append("node (Debian package nodejs)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append("Chromium at %s (Debian package chromium)" % CHROMIUM)
    if not (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").exists():
        missing.append("playwright-core in %s/node_modules (`npm ci` there)" % BROWSER_DIR)
    if missing:
        pytest.fail("the admin page's browser test cannot run: missing %s. "
                    "Run scripts/install-deps as root (`make test` does)."
                    % "; ".join(missing), pytrace=False)


def _run_ui_test(s, shot, *options):
    """Run ui_test.mjs against strata `s`; returns its JSON report."""
    _require_browser()
    argv = ["node", str(UI_TEST), s.admin, ADMIN_TOKEN, str(shot), *options]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=NODE_TIMEOUT,
                           cwd=str(BROWSER_DIR))
    except subprocess.TimeoutExpired as e:
        pytest.fail("ui_test.mjs did not finish within %d s\nstdout:\n%s\nstderr:\n%s"
                    % (NODE_TIMEOUT, e.stdout, e.stderr), pytrace=False)
    assert p.returncode == 0, "ui_test.mjs failed (exit %d):\n%s\n%s\nstrata stderr:\n%s" % (
        p.returncode, p.stderr[-4000:], p.stdout[-2000:], s.stderr_text()[-2000:])
    lines = p.stdout.strip().splitlines()
    assert lines, "ui_test.mjs printed no report; stderr:\n%s" % p.stderr[-2000:]
    return json.loads(lines[-1])


def _assert_png(path):
    assert path.exists(), "no screenshot at %s" % path
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, \
        "%s is not a plausible screenshot (%d bytes)" % (path, len(data))


# ---- the page as served (no browser) ----------------------------------------------

def test_ui_is_served_as_html_from_the_binary(origin, strata):
    s = strata()
    # A browser's navigation carries no Authorization header: the page itself
    # needs no token (it holds no data; every API call it makes needs one).
    r = requests.get(s.admin + "/_strata/ui", timeout=15)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"].replace(" ", "").lower() == "text/html;charset=utf-8"
    assert r.content == PAGE_SRC.read_bytes(), "the served page differs from " + str(PAGE_SRC)
    # ... while the API behind it still wants the token.
    r = requests.get(s.admin + "/_strata/stats", timeout=15)
    assert r.status_code == 401


def test_ui_needs_no_external_resources(origin, strata):
    s = strata()
    page = s.admin_get("/_strata/ui").text
    assert not re.search(r"https?://", page, re.I), "absolute URL in the page"
    # No attribute or CSS url() that loads anything, even from the same origin:
    # the page is one file.
    assert not re.search(r"""\b(src|href|srcset|poster|action)\s*=""", page, re.I), \
        "the page loads something through an attribute"
    assert not re.search(r"""url\(\s*['"]?(?!data:)""", page, re.I), "CSS url() in the page"
    assert not re.search(r"@import|<link\b|<iframe\b|<object\b|<embed\b", page, re.I)
    # fetch() only ever targets the admin API's own paths.
    for target in re.findall(r"""\bfetch\(\s*([^,)]+)""", page):
        assert target.strip() == "path", "fetch(%s)" % target


# ---- in the browser -------------------------------------------------------------

def test_ui_shows_stats_and_invalidates_a_tag(origin, strata, tmp_path):
    _require_browser()
    origin.route("/ui/tagged", headers=CC300_TAGGED, body=b"tagged")
    s = strata(routes=ROUTES)
    s.get("/ui/tagged")
    r = s.get("/ui/tagged")
    assert _hit(r), r.headers.get("Cache-Status")

    shot = tmp_path / "admin-ui.png"
    out = _run_ui_test(s, shot, "--cache=http", "--tag=t1")

    assert any(row[0] == "http" for row in out["caches"]), out["caches"]
    assert any(row[0] == "ui" for row in out["routes"]), out["routes"]
    # Tag removal is lazy: the count is a lower bound, but it is shown.
    assert isinstance(out["removed"], int) and out["removed"] >= 0, out
    r = s.get("/ui/tagged")
    assert "fwd=" in cache_status(r), "still cached after the page invalidated t1: %s" % (
        r.headers.get("Cache-Status"))
    assert origin.count("/ui/tagged") == 2
    _assert_png(shot)


def test_ui_explain_box(origin, strata, tmp_path):
    _require_browser()
    origin.route("/ui/tagged", headers=CC300_TAGGED, body=b"tagged")
    origin.route("/ui/private", headers={"Cache-Control": "no-store"}, body=b"private")
    s = strata(routes=ROUTES)
    s.get("/ui/tagged")
    r = s.get("/ui/private")
    assert "fwd=" in cache_status(r)

    out = _run_ui_test(s, tmp_path / "admin-ui-explain.png", "--explain=/ui/private")

    ex = out["explain"]
    for member in ("route", "key", "cache_control", "stored", "reason"):
        assert member in ex, "explain box lacks %r: %r" % (member, ex)
    assert ex["route"] == "ui", ex
    assert ex["stored"] == "no", ex
    assert ex["reason"], ex
    assert "/ui/private" in ex["key"], ex


def test_ui_warm_form(origin, strata, tmp_path):
    _require_browser()
    origin.route("/ui/tagged", headers=CC300_TAGGED, body=b"tagged")
    origin.route("/ui/warm", headers={"Cache-Control": "max-age=300"}, body=b"warm")
    s = strata(routes=ROUTES)
    s.get("/ui/tagged")

    out = _run_ui_test(s, tmp_path / "admin-ui-warm.png", "--warm=/ui/warm")

    rows = out["warm"]
    assert len(rows) == 1 and rows[0][0] == "/ui/warm" and rows[0][1] == "200", rows
    r = s.get("/ui/warm")
    assert _hit(r), "not cached after the page warmed it: %s" % r.headers.get("Cache-Status")
    assert origin.count("/ui/warm") == 1
