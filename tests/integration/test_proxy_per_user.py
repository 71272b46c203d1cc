"""strata serve: per_user routes (user_from header / cookie / JWT claim).
Two users never see each other's copy; a forged or absent identity gets no
one's copy."""
import threading

import pytest

from proxyutil import (assert_cs, cache_status, cs_params, jwt_headers, make_jwt,
                       wait_until)

STORED = "strata; fwd=uri-miss; fwd-status=200; stored"
JWT_KEY = "jwt-secret-for-tests"


def echo_user(header, cc="private, max-age=60"):
    """Origin handler: body = what identified the user + a request number."""
    lock = threading.Lock()
    n = [0]

    def h(req):
        with lock:
            n[0] += 1
            k = n[0]
        hs = {"Cache-Control": cc} if cc else {}
        return 200, hs, ("user=%s;n=%d" % (req.headers.get(header), k)).encode()
    return h


def _hit(r):
    return "hit" in cs_params(cache_status(r))


HEADER_ROUTE = [{"path": "/api/me*", "per_user": True, "user_from": "header:Authorization"}]


@pytest.mark.parametrize("cc", ["private, max-age=60", "max-age=60", "public, max-age=60"])
def test_header_identity_isolation(origin, strata, cc):
    origin.route("/api/me", handler=echo_user("Authorization", cc))
    s = strata(routes=HEADER_ROUTE)
    A = {"Authorization": "Bearer alice"}
    B = {"Authorization": "Bearer bob"}
    r = s.get("/api/me", headers=A)
    assert r.content == b"user=Bearer alice;n=1"
    assert_cs(r, STORED)
    r = s.get("/api/me", headers=A)
    assert r.content == b"user=Bearer alice;n=1"
    assert_cs(r, "strata; hit; ttl=60")
    r = s.get("/api/me", headers=B)
    assert r.content == b"user=Bearer bob;n=2"
    assert_cs(r, STORED)
    for who, body in ((B, b"user=Bearer bob;n=2"), (A, b"user=Bearer alice;n=1")):
        r = s.get("/api/me", headers=who)
        assert r.content == body
        assert_cs(r, "strata; hit; ttl=60")
    assert origin.count() == 2


def test_absent_identity_gets_no_ones_copy(origin, strata):
    origin.route("/api/me", handler=echo_user("Authorization"))
    s = strata(routes=HEADER_ROUTE)
    s.get("/api/me", headers={"Authorization": "Bearer alice"})
    assert _hit(s.get("/api/me", headers={"Authorization": "Bearer alice"}))
    for n in (2, 3):
        r = s.get("/api/me")
        assert r.content == b"user=None;n=%d" % n
        assert not _hit(r)
    assert origin.count() == 3


def test_private_needs_per_user_and_no_store_is_never_stored(origin, strata):
    origin.route("/api/me/ns", handler=echo_user("Authorization", "no-store"))
    s = strata(routes=HEADER_ROUTE)
    A = {"Authorization": "Bearer alice"}
    r = s.get("/api/me/ns", headers=A)
    assert_cs(r, "strata; fwd=uri-miss; fwd-status=200; detail=no-store")
    r = s.get("/api/me/ns", headers=A)
    assert r.content == b"user=Bearer alice;n=2" and not _hit(r)
    assert origin.count() == 2


def test_route_ttl_applies_with_credentials_on_per_user_route(origin, strata):
    origin.route("/api/me/silent", handler=echo_user("Authorization", cc=None))
    s = strata(routes=[{**HEADER_ROUTE[0], "ttl": "10m"}])
    A = {"Authorization": "Bearer alice"}
    assert_cs(s.get("/api/me/silent", headers=A), STORED)
    r = s.get("/api/me/silent", headers=A)
    assert r.content == b"user=Bearer alice;n=1"
    assert_cs(r, "strata; hit; ttl=600")
    r = s.get("/api/me/silent", headers={"Authorization": "Bearer bob"})
    assert r.content == b"user=Bearer bob;n=2"


def test_cookie_identity_isolation(origin, strata):
    origin.route("/api/me", handler=echo_user("Cookie"))
    s = strata(routes=[{"path": "/api/me*", "per_user": True, "user_from": "cookie:sessionid"}])
    A = {"Cookie": "sessionid=aaa; theme=dark"}
    B = {"Cookie": "sessionid=bbb; theme=dark"}
    assert s.get("/api/me", headers=A).content == b"user=sessionid=aaa; theme=dark;n=1"
    r = s.get("/api/me", headers=A)
    assert r.content == b"user=sessionid=aaa; theme=dark;n=1"
    assert_cs(r, "strata; hit; ttl=60")
    r = s.get("/api/me", headers=B)
    assert r.content == b"user=sessionid=bbb; theme=dark;n=2"
    assert_cs(r, STORED)
    assert s.get("/api/me", headers=B).content == b"user=sessionid=bbb; theme=dark;n=2"
    # no cookie, or a cookie of another name with alice's value: nobody
    for n, hs in ((3, {}), (4, {"Cookie": "theme=dark"}), (5, {"Cookie": "session=aaa"})):
        r = s.get("/api/me", headers=hs)
        assert r.content.endswith(b";n=%d" % n) and not _hit(r)
    assert origin.count() == 5


def _jwt_route():
    return [{"path": "/api/me*", "per_user": True, "user_from": "jwt:sub",
             "jwt_key": JWT_KEY}]


def test_jwt_identity_isolation(origin, strata):
    origin.route("/api/me", handler=echo_user("Authorization"))
    s = strata(routes=_jwt_route())
    alice = make_jwt({"sub": "alice", "iat": 1700000000}, JWT_KEY)
    alice2 = make_jwt({"sub": "alice", "iat": 1700000100}, JWT_KEY)
    bob = make_jwt({"sub": "bob", "iat": 1700000000}, JWT_KEY)
    r = s.get("/api/me", headers=jwt_headers(alice))
    assert r.content.endswith(b";n=1")
    assert_cs(r, STORED)
    # another valid token of the same subject: the same identity
    r = s.get("/api/me", headers=jwt_headers(alice2))
    assert r.content.endswith(b";n=1")
    assert_cs(r, "strata; hit; ttl=60")
    r = s.get("/api/me", headers=jwt_headers(bob))
    assert r.content.endswith(b";n=2")
    assert_cs(r, STORED)
    assert s.get("/api/me", headers=jwt_headers(bob)).content.endswith(b";n=2")
    assert s.get("/api/me", headers=jwt_headers(alice)).content.endswith(b";n=1")
    assert origin.count() == 2


def test_forged_or_absent_jwt_gets_no_ones_copy(origin, strata):
    origin.route("/api/me", handler=echo_user("Authorization"))
    s = strata(routes=_jwt_route())
    alice = make_jwt({"sub": "alice"}, JWT_KEY)
    assert s.get("/api/me", headers=jwt_headers(alice)).content.endswith(b";n=1")
    assert _hit(s.get("/api/me", headers=jwt_headers(alice)))
    h, p, sig = alice.split(".")
    forged = [
        make_jwt({"sub": "alice"}, "wrong-key"),           # bad signature
        make_jwt({"sub": "alice"}, JWT_KEY, alg="none"),   # unsigned
        "%s.%s.%s" % (h, p, sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")),
        "%s.%s." % (h, p),                                  # signature removed
        "not-a-jwt",
    ]
    n = 1
    for tok in forged:
        n += 1
        r = s.get("/api/me", headers=jwt_headers(tok))
        assert r.status_code == 200
        assert r.content.endswith(b";n=%d" % n), tok
        assert not _hit(r), tok
    n += 1
    r = s.get("/api/me")
    assert r.content.endswith(b";n=%d" % n) and not _hit(r)
    assert origin.count() == n


def test_concurrent_users_are_never_collapsed_together(origin, strata):
    gate = origin.gate("/api/me")
    origin.route("/api/me", handler=echo_user("Authorization"), gate=gate)
    s = strata(routes=HEADER_ROUTE)
    out = {}

    def client(who):
        out[who] = s.get("/api/me", headers={"Authorization": "Bearer " + who})

    ts = [threading.Thread(target=client, args=(w,)) for w in ("alice", "bob")]
    for t in ts:
        t.start()
    gate.wait_waiting(2)  # both reached the origin: not one waiting for the other
    gate.release()
    for t in ts:
        t.join(15)
    wait_until(lambda: len(out) == 2, 5, msg="both answers")
    assert out["alice"].content.startswith(b"user=Bearer alice;")
    assert out["bob"].content.startswith(b"user=Bearer bob;")
    assert origin.count() == 2
