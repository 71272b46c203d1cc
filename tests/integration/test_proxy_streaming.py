"""strata serve: bodies stream. Large and non-cacheable responses reach the
client as they arrive; request bodies stream to the origin; a 100 MB
response to a slow reader leaves strata's RSS within 64 MB of its start.

The 100 MB test runs on whatever binary the suite uses. When that binary is
an ASan build, strata is started with
ASAN_OPTIONS=...:quarantine_size_mb=1:malloc_context_size=0:detect_leaks=0
so that ASan's quarantine of freed buffers (256 MB by default) is bounded and
the RSS bound measures strata's buffering, not the sanitizer's; the bound is
the same 64 MB either way."""
import hashlib
import os
import threading
import time

from conftest import is_asan_binary
from proxyutil import RawConn, assert_cs, cache_status, cs_params, wait_until

MB = 1 << 20


def _held_stream(first, rest, release):
    """A body: `first` bytes, then (after release is set) `rest` bytes."""
    def gen():
        yield first
        assert release.wait(20), "stream never released"
        yield rest
    return gen


def _read_until(c, pred, timeout=10):
    deadline = time.monotonic() + timeout
    c.sock.settimeout(timeout)
    while not pred(c.buf):
        if time.monotonic() > deadline:
            raise AssertionError("timed out; have %d bytes" % len(c.buf))
        c._fill()


def test_large_response_streams_before_origin_finishes(origin, strata):
    release = threading.Event()
    first, rest = b"a" * (512 * 1024), b"b" * (2 * MB)
    origin.route("/big", headers={"Cache-Control": "max-age=60"},
                 stream=_held_stream(first, rest, release),
                 content_length=len(first) + len(rest))
    s = strata(http_cache={"max_object_size": "1MB"})
    try:
        with RawConn(s.port, timeout=10) as c:
            c.request("GET", "/big", host=s.host)
            version, status, reason, hl = c.read_head()
            assert status == 200
            _read_until(c, lambda b: len(b) >= 256 * 1024)  # before the origin is done
            release.set()
            _read_until(c, lambda b: len(b) >= len(first) + len(rest))
            assert c.buf == first + rest
        hdrs = dict((k.lower(), v) for k, v in hl)
        m = [x.strip() for x in hdrs["cache-status"].split(",") if "strata" in x][-1]
        assert "detail=too-big" in m.replace(" ", "")
    finally:
        release.set()
    r = s.get("/big")  # not stored
    assert len(r.content) == len(first) + len(rest)
    assert origin.count("/big") == 2


def test_chunked_response_growing_past_max_object_size_streams(origin, strata):
    """No Content-Length: once more than max_object_size has arrived strata
    knows the object will not be stored and must stream it on."""
    release = threading.Event()
    # (not hex digits: the chunk-size lines of the stream must not match)
    first, rest = b"x" * (1280 * 1024), b"z" * (512 * 1024)
    origin.route("/growing", headers={"Cache-Control": "max-age=60"},
                 stream=_held_stream(first, rest, release))
    s = strata(http_cache={"max_object_size": "1MB"})
    try:
        with RawConn(s.port, timeout=10) as c:
            c.request("GET", "/growing", host=s.host)
            c.read_head()  # before the origin is done
            _read_until(c, lambda b: len(b) >= 1024 * 1024)
            assert b"z" not in c.buf
            release.set()
        r = s.get("/growing")
        assert r.content == first + rest
    finally:
        release.set()
    r = s.get("/growing")
    assert r.content == first + rest
    assert "hit" not in cs_params(cache_status(r))
    assert origin.count("/growing") == 3


def test_non_cacheable_response_streams(origin, strata):
    release = threading.Event()
    first, rest = b"p" * 65536, b"q" * 65536
    origin.route("/priv", headers={"Cache-Control": "private"},
                 stream=_held_stream(first, rest, release))
    s = strata()
    try:
        with RawConn(s.port, timeout=10) as c:
            c.request("GET", "/priv", host=s.host)
            c.read_head()
            _read_until(c, lambda b: b"p" * 1000 in b)
            assert b"q" not in c.buf
            release.set()
    finally:
        release.set()


def test_small_chunked_response_is_stored_and_served_whole(origin, strata):
    body = os.urandom(200000)
    origin.route("/ch", headers={"Cache-Control": "max-age=60"}, body=body, chunked=True,
                 chunk_size=3000)
    s = strata()
    r = s.get("/ch")
    assert r.content == body
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=200; stored")
    r = s.get("/ch")
    assert r.content == body
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count() == 1


def test_hit_of_a_large_stored_object(origin, strata):
    body = os.urandom(6 * MB)  # under the 8 MB default max_object_size
    origin.route("/six", headers={"Cache-Control": "max-age=60"}, body=body)
    s = strata()
    assert s.get("/six").content == body
    r = s.get("/six")
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(body).digest()
    assert_cs(r, "strata; hit; ttl=60")
    assert origin.count() == 1


def test_request_body_streams_to_origin(origin, strata):
    origin.route("/upload", method="POST", handler=lambda req: (
        200, {}, b"%d:%s" % (len(req.body), hashlib.sha256(req.body).hexdigest().encode())))
    s = strata()
    part1, part2 = b"1" * 100000, b"2" * 100000
    with RawConn(s.port, timeout=10) as c:
        c.send("POST /upload HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % s.host)
        c.send(b"%x\r\n" % len(part1) + part1 + b"\r\n")
        # the origin sees the request while the client is still sending
        wait_until(lambda: origin.count("/upload") == 1, 10, msg="request head at origin")
        assert not origin.last("/upload").complete.is_set()
        c.send(b"%x\r\n" % len(part2) + part2 + b"\r\n0\r\n\r\n")
        r = c.read_response()
    body = part1 + part2
    assert r.content == b"%d:%s" % (len(body), hashlib.sha256(body).hexdigest().encode())


def test_large_request_body_with_content_length(origin, strata):
    origin.route("/put", method="PUT", handler=lambda req: (
        201, {}, hashlib.sha256(req.body).hexdigest().encode()))
    s = strata()
    body = os.urandom(20 * MB)
    r = s.request("PUT", "/put", data=body, timeout=60)
    assert (r.status_code, r.content) == (201, hashlib.sha256(body).hexdigest().encode())


def test_100mb_response_to_slow_reader_keeps_rss_bounded(origin, strata, build_dir):
    size = 100 * MB
    piece = bytes(range(256)) * 256  # 64 KiB

    def gen():
        for _ in range(size // len(piece)):
            yield piece

    origin.route("/huge", headers={"Cache-Control": "public, max-age=60"}, stream=gen,
                 content_length=size)
    origin.route("/warm", headers={"Cache-Control": "max-age=60"}, body=b"w" * 100000)
    env = {}
    if is_asan_binary(str(build_dir / "strata")):
        prev = os.environ.get("ASAN_OPTIONS", "")
        env["ASAN_OPTIONS"] = ":".join(
            x for x in (prev, "quarantine_size_mb=1:malloc_context_size=0:detect_leaks=0") if x)
    s = strata(env=env)
    for _ in range(3):
        s.get("/warm")
    base = s.rss_kb()
    peak = base
    got = 0
    h = hashlib.sha256()
    with RawConn(s.port, timeout=30, rcvbuf=32 * 1024) as c:
        c.request("GET", "/huge", host=s.host)
        version, status, reason, hl = c.read_head()
        assert status == 200
        got = len(c.buf)
        h.update(c.buf)
        c.buf = bytearray()
        t0 = time.monotonic()
        n = 0
        while got < size:
            d = c.sock.recv(16384)
            if not d:
                break
            got += len(d)
            h.update(d)
            n += 1
            if n % 64 == 0:
                time.sleep(0.04)  # a slow reader: ~25 MB/s, far below the origin
                peak = max(peak, s.rss_kb())
            assert time.monotonic() - t0 < 240, "transfer too slow"
    peak = max(peak, s.rss_kb())
    assert got == size
    expect = hashlib.sha256()
    for _ in range(size // len(piece)):
        expect.update(piece)
    assert h.digest() == expect.digest()
    growth_mb = (peak - base) / 1024
    print("RSS: base %d kB, peak %d kB, growth %.1f MB (asan options: %r)" % (
        base, peak, growth_mb, env.get("ASAN_OPTIONS")))
    assert growth_mb < 64, "strata's RSS grew by %.1f MB (from %d kB to %d kB)" % (
        growth_mb, base, peak)
