"""Shared fixtures for strata's integration tests.

The tests run the binaries of a build directory: $STRATA_BUILD_DIR (set by
CTest), else build-asan/ or build/ at the top of the repository.
"""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _build_dir():
    env = os.environ.get("STRATA_BUILD_DIR")
    if env:
        return pathlib.Path(env)
    for name in ("build-asan", "build"):
        d = ROOT / name
        if (d / "strata").exists():
            return d
    pytest.fail("no built strata binary: run `make test` (or set STRATA_BUILD_DIR)")


@pytest.fixture(scope="session")
def build_dir():
    return _build_dir()


@pytest.fixture
def strata_cmd(build_dir):
    """Run `strata ARGS...`; returns the CompletedProcess (bounded in time)."""

    def run(*args, check=None):
        p = subprocess.run(
            [str(build_dir / "strata"), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check is not None:
            assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
        return p

    return run


# ---------------------------------------------------------------------------
# The proxy: a scripted origin and a `strata serve` process in front of it.
# ---------------------------------------------------------------------------

import json
import signal
import socket
import sys
import time

import requests

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from origin import Origin  # noqa: E402
from proxyutil import ADMIN_TOKEN, USER_SECRET, RawConn, raw_request  # noqa: E402

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                   "WARNING: ThreadSanitizer")


@pytest.fixture
def origin():
    """A scripted origin on a free loopback port, stopped after the test."""
    o = Origin()
    o.start()
    yield o
    o.stop()


class RedisServer:
    """redis-server (Debian's) on a free loopback port, no persistence."""

    def __init__(self):
        self.port = free_ports(1)[0]
        self.proc = None

    def start(self):
        import shutil
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed: run scripts/install-deps")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("redis-server did not start on %d" % self.port)
            time.sleep(0.01)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port


@pytest.fixture
def redis_server():
    """A redis-server for one test, stopped afterwards."""
    r = RedisServer()
    r.start()
    yield r
    r.stop()


def free_ports(n):
    """n distinct free loopback ports (bound together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a YAML double-quoted scalar


def to_yaml(obj, indent=0):
    """A small YAML emitter: block mappings and sequences, JSON scalars, flow
    style for lists of scalars and for mappings inside sequences."""
    pad = "  " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict):
                if v:
                    lines.append("%s%s:" % (pad, k))
                    lines.append(to_yaml(v, indent + 1))
                else:
                    lines.append("%s%s: {}" % (pad, k))
            elif isinstance(v, list):
                if v and any(isinstance(x, (dict, list)) for x in v):
                    lines.append("%s%s:" % (pad, k))
                    for x in v:
                        lines.append("%s  - %s" % (pad, _flow(x)))
                else:
                    lines.append("%s%s: %s" % (pad, k, _flow(v)))
            else:
                lines.append("%s%s: %s" % (pad, k, _yaml_scalar(v)))
    else:
        lines.append(pad + _flow(obj))
    return "\n".join(lines)


def _flow(v):
    if isinstance(v, dict):
        return "{" + ", ".join("%s: %s" % (k, _flow(x)) for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    return _yaml_scalar(v)


def _merge(base, extra):
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


_SERVE_CHECKED = {}


def _check_serve_exists(binary):
    """Fail at once, clearly, when this build has no `strata serve`."""
    if binary in _SERVE_CHECKED:
        msg = _SERVE_CHECKED[binary]
    else:
        msg = None
        if not pathlib.Path(binary).exists():
            msg = "%s does not exist (build strata first)" % binary
        else:
            p = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True,
                               timeout=30)
            if p.returncode != 0 or "unknown command" in p.stderr:
                msg = ("`strata serve` is not available in %s (serve --help: exit %d, "
                       "stderr %r)" % (binary, p.returncode, p.stderr.strip()[:300]))
        _SERVE_CHECKED[binary] = msg
    if msg:
        pytest.fail(msg, pytrace=False)


def is_asan_binary(binary):
    """True for an ASan build (static or shared libasan: both reference
    __asan_init)."""
    with open(binary, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"AddressSanitizer" in data


class Strata:
    """A running `strata serve`.

    .url .port          the proxy listener (http://127.0.0.1:PORT)
    .admin .admin_port  the admin listener (http://127.0.0.1:PORT)
    .advance(ms)        move strata's clock (POST /_strata/debug/clock)
    .get/.head/.post/.request(method, path, **kw)   requests on a new connection
    .raw(method, target, headers, body)              one raw request (exact target)
    .conn()             a RawConn to the proxy
    .purge(path, headers=None)                       PURGE path
    .admin_get/.admin_post(path, json=...)           admin API with the token
    .proc .stderr_text() .stdout_text() .access_log_lines() .rss_kb()
    .stop(sig=SIGTERM, timeout=10) -> exit code
    """

    def __init__(self, binary, config, tmp, env, args, wait_admin):
        self.binary = binary
        self.tmp = tmp
        self.config = config
        self.port = self.admin_port = None
        self.exit_code = None
        self.proc = None
        self.start_failed = False
        self.config_path = None
        self.access_log_path = None
        self._args = args
        self._env = env
        self._wait_admin = wait_admin

    # --- lifecycle
    def _start(self, yaml_text):
        n = len(list(self.tmp.glob("strata*.yaml")))
        tag = "" if n == 0 else "-%d" % n
        self.stdout_path = self.tmp / ("strata%s.stdout" % tag)
        self.stderr_path = self.tmp / ("strata%s.stderr" % tag)
        if yaml_text is not None:
            self.config_path = self.tmp / ("strata%s.yaml" % tag)
            self.config_path.write_text(yaml_text)
            argv = [str(self.binary), "serve", "-c", str(self.config_path)]
        else:
            argv = [str(self.binary), "serve"]
        argv += list(self._args)
        self.argv = argv
        self.start_failed = True  # until it listens
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, env=self._env,
                                         cwd=str(self.tmp), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.exit_code = rc
                self.start_failed = True
                pytest.fail("strata serve exited with code %d before listening\n"
                            "argv: %s\nconfig:\n%s\nstderr:\n%s"
                            % (rc, " ".join(argv), yaml_text or "(none)",
                               self.stderr_text()[-4000:]), pytrace=False)
            ready = port_open(self.port) and (not self._wait_admin
                                              or port_open(self.admin_port))
            if ready:
                self.start_failed = False
                return
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait(10)
                self.exit_code = "killed"
                self.start_failed = True
                pytest.fail("strata serve did not listen on %s within 10 s\nstderr:\n%s"
                            % ((self.port, self.admin_port), self.stderr_text()[-4000:]),
                            pytrace=False)
            time.sleep(0.02)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal strata and wait (bounded) for it to exit; returns its code."""
        if self.exit_code is not None:
            return self.exit_code
        if self.proc is None:
            return "not started"
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self.exit_code = "timeout"
                return self.exit_code
        self.exit_code = self.proc.returncode
        return self.exit_code

    def sanitizer_report(self):
        err = self.stderr_text()
        for m in SANITIZER_MARKS:
            if m in err:
                i = err.find(m)
                return err[max(0, i - 200):i + 3000]
        return None

    # --- clients
    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def admin(self):
        return "http://127.0.0.1:%d" % self.admin_port

    @property
    def host(self):
        return "127.0.0.1:%d" % self.port

    def request(self, method, path, **kw):
        kw.setdefault("timeout", 15)
        kw.setdefault("allow_redirects", False)
        return requests.request(method, self.url + path, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def head(self, path, **kw):
        return self.request("HEAD", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def purge(self, path, headers=None):
        return self.request("PURGE", path, headers=headers or {})

    def raw(self, method, target, headers=(), body=None, host=None, timeout=15):
        return raw_request(self.port, method, target, headers, body,
                           host=self.host if host is None else host, timeout=timeout)

    def conn(self, **kw):
        return RawConn(self.port, **kw)

    def admin_request(self, method, path, token=ADMIN_TOKEN, **kw):
        kw.setdefault("timeout", 15)
        headers = dict(kw.pop("headers", {}) or {})
        if token is not None:
            headers.setdefault("Authorization", "Bearer %s" % token)
        return requests.request(method, self.admin + path, headers=headers, **kw)

    def admin_get(self, path, **kw):
        return self.admin_request("GET", path, **kw)

    def admin_post(self, path, json=None, **kw):
        return self.admin_request("POST", path, json=json, **kw)

    def advance(self, ms):
        """Move strata's clock forward by `ms` milliseconds."""
        r = self.admin_post("/_strata/debug/clock", json={"advance_ms": int(ms)})
        assert r.status_code == 200, "POST /_strata/debug/clock: %d %r" % (
            r.status_code, r.text[:500])
        return r

    def invalidate(self, **body):
        r = self.admin_post("/_strata/invalidate", json=body)
        assert r.status_code == 200, "POST /_strata/invalidate: %d %r" % (
            r.status_code, r.text[:500])
        return r.json()

    # --- observation
    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stdout_text(self):
        try:
            return self.stdout_path.read_text(errors="replace")
        except OSError:
            return ""

    def access_log_lines(self):
        if self.access_log_path is None:
            return []
        try:
            return [ln for ln in self.access_log_path.read_text(errors="replace")
                    .splitlines() if ln.strip()]
        except OSError:
            return []

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
        raise AssertionError("no VmRSS for pid %d" % self.proc.pid)


@pytest.fixture
def strata(build_dir, origin, tmp_path):
    """Factory: start `strata serve` in front of `origin`.

    s = strata(routes=[{"path": "/a/*", "ttl": "1h"}],
               http_cache={"purge": {"allow": ["10.0.0.0/8"]}},
               server={"workers": 4}, config_yaml_extra="bus: {timeout: 5s}\\n")

    The YAML file (tmp_path/strata.yaml) has server.listen/upstream,
    admin.listen/token ("test-token"), server.workers 2, server.access_log
    (tmp_path/access.log), http_cache.user_secret; `server`, `admin`,
    `http_cache`, `caches` dicts are merged into it (deep merge), `routes`
    becomes http_cache.routes. `config_yaml_extra` is raw YAML appended as
    is: it may add top-level sections but not repeat server/admin (use the
    dicts); if it has `http_cache:` the generated http_cache is left out.
    `config_yaml` replaces the whole file (listen/upstream are then the
    test's business: use strata.ports(n) / origin.port). `env` adds
    environment variables (STRATA_TEST_CLOCK=1 is set unless env gives it
    None, which removes a variable); `args` extra CLI args;
    `no_config=True` runs `strata serve ARGS` without -c; in `args`,
    {port}, {admin_port} and {origin_port} are replaced by the ports.
    Teardown: SIGTERM, exit 0 within 10 s, no sanitizer report on stderr.
    """
    binary = str((build_dir / "strata").resolve())
    started = []

    def start(config_yaml_extra=None, routes=None, server=None, admin=None,
              http_cache=None, caches=None, env=None, args=(), config_yaml=None,
              no_config=False, wait_admin=True, upstream=None):
        _check_serve_exists(binary)
        port, admin_port = free_ports(2)
        access_log = tmp_path / ("access%s.log" % ("" if not started else "-%d" % len(started)))
        cfg = {
            "server": {
                "listen": "127.0.0.1:%d" % port,
                "upstream": upstream or "http://127.0.0.1:%d" % origin.port,
                "workers": 2,
                "access_log": str(access_log),
            },
            "admin": {"listen": "127.0.0.1:%d" % admin_port, "token": ADMIN_TOKEN},
            "http_cache": {"user_secret": USER_SECRET},
        }
        _merge(cfg["server"], server)
        _merge(cfg["admin"], admin)
        _merge(cfg["http_cache"], http_cache)
        if routes is not None:
            cfg["http_cache"]["routes"] = routes
        if caches:
            cfg["caches"] = caches
        extra = config_yaml_extra or ""
        top = {ln.split(":")[0].strip() for ln in extra.splitlines()
               if ln and not ln[0].isspace() and not ln.startswith("#") and ":" in ln}
        if top & {"server", "admin"}:
            raise ValueError("config_yaml_extra may not repeat server/admin: "
                             "pass server=/admin= dicts")
        if "http_cache" in top:
            del cfg["http_cache"]
        text = to_yaml(cfg) + "\n" + (extra if extra.endswith("\n") or not extra
                                      else extra + "\n")
        if config_yaml is not None:
            text = config_yaml
        e = dict(os.environ)
        e["STRATA_TEST_CLOCK"] = "1"
        for k, v in (env or {}).items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        args = [str(a).format(port=port, admin_port=admin_port, origin_port=origin.port)
                for a in args]
        s = Strata(binary, cfg, tmp_path, e, args, wait_admin)
        s.port, s.admin_port = port, admin_port
        if config_yaml is None and not no_config:
            s.access_log_path = access_log
        started.append(s)
        s._start(None if no_config else text)
        return s

    start.ports = free_ports
    yield start

    problems = []
    for s in started:
        if s.start_failed:  # already reported; make sure it is gone
            if s.proc is not None and s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait(10)
            continue
        code = s.stop()
        if code != 0:
            problems.append("strata serve (%s) exit code %r after SIGTERM, expected 0; "
                            "stderr:\n%s" % (" ".join(s.argv), code, s.stderr_text()[-4000:]))
        rep = s.sanitizer_report()
        if rep:
            problems.append("sanitizer report on strata's stderr:\n%s" % rep)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
