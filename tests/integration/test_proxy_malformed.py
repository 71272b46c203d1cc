"""strata serve: malformed and ambiguous requests (raw sockets). Each gets a
4xx (400 where DESIGN says so), the connection is closed, and nothing
reaches the origin (not even a request head: the origin records heads)."""
import pytest

from proxyutil import RawConn, parse_first_status

H = "Host: example.com\r\n"

CASES = {
    # request smuggling
    "cl_and_te": "POST /x HTTP/1.1\r\n" + H + "Content-Length: 4\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_and_cl": "POST /x HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n"
                 "Content-Length: 4\r\n\r\n0\r\n\r\n",
    "duplicate_cl_same": "POST /x HTTP/1.1\r\n" + H + "Content-Length: 4\r\n"
                         "Content-Length: 4\r\n\r\nabcd",
    "duplicate_cl_different": "POST /x HTTP/1.1\r\n" + H + "Content-Length: 4\r\n"
                              "Content-Length: 5\r\n\r\nabcde",
    "negative_cl": "POST /x HTTP/1.1\r\n" + H + "Content-Length: -1\r\n\r\n",
    "plus_cl": "POST /x HTTP/1.1\r\n" + H + "Content-Length: +4\r\n\r\nabcd",
    "junk_cl": "POST /x HTTP/1.1\r\n" + H + "Content-Length: 4a\r\n\r\nabcd",
    "overflow_cl": "POST /x HTTP/1.1\r\n" + H + "Content-Length: 99999999999999999999999\r\n\r\n",
    "te_not_chunked": "POST /x HTTP/1.1\r\n" + H + "Transfer-Encoding: gzip\r\n\r\nabcd",
    # header syntax
    "leading_space_header_name": "GET /x HTTP/1.1\r\n X-Foo: bar\r\n" + H + "\r\n",
    "trailing_space_header_name": "GET /x HTTP/1.1\r\n" + H + "X-Foo : bar\r\n\r\n",
    "space_in_header_name": "GET /x HTTP/1.1\r\n" + H + "X Foo: bar\r\n\r\n",
    "trailing_space_transfer_encoding": "POST /x HTTP/1.1\r\n" + H +
                                        "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "bare_cr_in_value": "GET /x HTTP/1.1\r\n" + H + "X-Foo: a\rb\r\n\r\n",
    "bare_cr_line_end": "GET /x HTTP/1.1\r\n" + H + "X-Foo: a\rX-Bar: b\r\n\r\n",
    "nul_in_value": "GET /x HTTP/1.1\r\n" + H + "X-Foo: a\x00b\r\n\r\n",
    "obs_fold_space": "GET /x HTTP/1.1\r\n" + H + "X-Foo: a\r\n b\r\n\r\n",
    "obs_fold_tab": "GET /x HTTP/1.1\r\n" + H + "X-Foo: a\r\n\tb\r\n\r\n",
    "header_without_colon": "GET /x HTTP/1.1\r\n" + H + "X-Foo\r\n\r\n",
    # chunked framing
    "chunk_size_overflow": "POST /x HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
                           "FFFFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n",
    "chunk_size_overflow_wraps_to_small": "POST /x HTTP/1.1\r\n" + H +
                                          "Transfer-Encoding: chunked\r\n\r\n"
                                          "10000000000000003\r\nabc\r\n0\r\n\r\n",
    "chunk_size_not_hex": "POST /x HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
                          "zz\r\nabc\r\n0\r\n\r\n",
    "chunk_data_without_crlf": "POST /x HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
                               "3\r\nabcXY0\r\n\r\n",
    # request line and target
    "target_not_origin_form": "GET abc HTTP/1.1\r\n" + H + "\r\n",
    "target_bad_percent": "GET /%zz HTTP/1.1\r\n" + H + "\r\n",
    "target_control_byte": "GET /a\x01b HTTP/1.1\r\n" + H + "\r\n",
    "target_high_byte": "GET /a\xffb HTTP/1.1\r\n" + H + "\r\n",
    "request_line_extra_token": "GET /x HTTP/1.1 extra\r\n" + H + "\r\n",
    "missing_host": "GET /x HTTP/1.1\r\nAccept: */*\r\n\r\n",
    "duplicate_host": "GET /x HTTP/1.1\r\n" + H + "Host: evil.example\r\n\r\n",
    "get_with_body": "GET /x HTTP/1.1\r\n" + H + "Content-Length: 3\r\n\r\nabc",
    "head_with_chunked_body": "HEAD /x HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
                              "3\r\nabc\r\n0\r\n\r\n",
}

MUST_BE_400 = {"cl_and_te", "te_and_cl", "duplicate_cl_same", "duplicate_cl_different",
               "leading_space_header_name", "trailing_space_header_name", "bare_cr_in_value",
               "bare_cr_line_end", "obs_fold_space", "obs_fold_tab", "missing_host",
               "duplicate_host", "get_with_body", "head_with_chunked_body",
               "trailing_space_transfer_encoding"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_request_rejected(origin, strata, name):
    origin.route("*", headers={"Cache-Control": "max-age=60"}, body=b"origin")
    s = strata()
    with RawConn(s.port, timeout=5) as c:
        c.send(CASES[name].encode("latin-1"))
        data, closed = c.read_all(timeout=5)
    status = parse_first_status(data)
    assert status is not None, "no response to %s: %r" % (name, data[:200])
    if name in MUST_BE_400:
        assert status == 400, (name, data[:300])
    else:
        assert 400 <= status < 500, (name, data[:300])
    assert closed, "connection left open after rejecting %s" % name
    assert data.count(b"HTTP/1.") == 1, "more than one response: %r" % data[:500]
    assert origin.count() == 0, "reached the origin: %r" % origin.requests
    # strata is still fine
    r = s.get("/after")
    assert (r.status_code, r.content) == (200, b"origin")


def test_smuggled_request_after_cl_te_never_reaches_origin(origin, strata):
    origin.route("*", body=b"origin")
    s = strata()
    smuggle = ("POST /front HTTP/1.1\r\n" + H + "Content-Length: 44\r\n"
               "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
               "GET /smuggled HTTP/1.1\r\n" + H + "\r\n")
    with RawConn(s.port, timeout=5) as c:
        c.send(smuggle.encode())
        data, closed = c.read_all(timeout=5)
    assert parse_first_status(data) == 400 and closed
    assert origin.count() == 0


def test_smuggled_request_after_duplicate_cl_never_reaches_origin(origin, strata):
    origin.route("*", body=b"origin")
    s = strata()
    smuggle = ("POST /front HTTP/1.1\r\n" + H + "Content-Length: 0\r\n"
               "Content-Length: 37\r\n\r\n"
               "GET /smuggled HTTP/1.1\r\n" + H + "\r\n")
    with RawConn(s.port, timeout=5) as c:
        c.send(smuggle.encode())
        data, closed = c.read_all(timeout=5)
    assert parse_first_status(data) == 400 and closed
    assert origin.count() == 0


def test_malformed_request_after_a_good_one_on_keepalive(origin, strata):
    origin.route("/good", headers={"Cache-Control": "max-age=60"}, body=b"good")
    s = strata()
    with RawConn(s.port, timeout=5) as c:
        c.request("GET", "/good", host=s.host)
        r = c.read_response()
        assert (r.status_code, r.content) == (200, b"good")
        c.send("GET /x HTTP/1.1\r\nHost: %s\r\nX-Foo: a\r\n b\r\n\r\n" % s.host)
        data, closed = c.read_all(timeout=5)
    assert parse_first_status(data) == 400 and closed
    assert origin.count() == 1


def test_valid_chunked_post_is_forwarded(origin, strata):
    """Control for the chunked cases: well-formed chunking works."""
    origin.route("/up", method="POST", handler=lambda req: (200, {}, b"got " + req.body))
    s = strata()
    with RawConn(s.port, timeout=5) as c:
        c.send("POST /up HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
               "3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n" % s.host)
        r = c.read_response()
    assert (r.status_code, r.content) == (200, b"got abcdefg")
    assert origin.count() == 1
