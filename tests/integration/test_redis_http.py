"""Several `strata serve` nodes sharing their HTTP cache through Redis (a
tiered cache: each node's L1 in memory over the shared L2)."""
HOST = {"Host": "shop.example"}


def _nodes(strata, redis_server, n=2):
    caches = {"http": {"backend": "tiered", "url": redis_server.url, "l1_ttl": "5s"}}
    return [strata(caches=caches) for _ in range(n)]


def test_a_response_stored_by_one_node_is_a_hit_on_another(strata, origin, redis_server):
    origin.route("/p", body=b"v1", headers={"Cache-Control": "max-age=60"})
    a, b = _nodes(strata, redis_server)
    r = a.get("/p", headers=HOST)
    assert "stored" in r.headers["Cache-Status"], r.headers
    r = b.get("/p", headers=HOST)
    assert r.content == b"v1" and "hit" in r.headers["Cache-Status"], r.headers
    assert origin.count("/p") == 1


def test_an_invalidation_on_one_node_reaches_the_other_within_l1_ttl(strata, origin,
                                                                      redis_server):
    origin.route("/p", body=b"v1", headers={"Cache-Control": "max-age=600",
                                             "Surrogate-Key": "prod"})
    a, b = _nodes(strata, redis_server)
    assert a.get("/p", headers=HOST).content == b"v1"
    assert "hit" in b.get("/p", headers=HOST).headers["Cache-Status"]  # in B's L1 now
    origin.route("/p", body=b"v2", headers={"Cache-Control": "max-age=600",
                                             "Surrogate-Key": "prod"})
    a.invalidate(tags=["prod"])
    r = a.get("/p", headers=HOST)
    assert r.content == b"v2" and "fwd=" in r.headers["Cache-Status"]
    # B may serve its L1 copy for at most l1_ttl ...
    assert b.get("/p", headers=HOST).content in (b"v1", b"v2")
    b.advance(5001)
    # ... and then reads Redis, where A stored v2
    r = b.get("/p", headers=HOST)
    assert r.content == b"v2", (r.content, r.headers)


def test_redis_down_the_proxy_still_answers(strata, origin, redis_server):
    origin.route("/p", body=b"v1", headers={"Cache-Control": "max-age=60"})
    origin.route("/q", body=b"q", headers={"Cache-Control": "max-age=60"})
    (a,) = _nodes(strata, redis_server, 1)
    assert a.get("/p", headers=HOST).status_code == 200
    redis_server.stop()
    r = a.get("/p", headers=HOST)  # from L1
    assert r.status_code == 200 and "hit" in r.headers["Cache-Status"]
    for _ in range(5):  # not cached anywhere: the origin answers, never a 5xx
        r = a.get("/q", headers=HOST)
        assert r.status_code == 200 and r.content == b"q"
    st = a.admin_get("/_strata/stats").json()["caches"]["http"]
    assert st["errors"] >= 1 and st["backend"] == "tiered"


def test_a_purge_on_one_node_reaches_the_others_l1_through_the_bus(strata, origin,
                                                                    redis_server):
    import time
    origin.route("/p", body=b"v1", headers={"Cache-Control": "max-age=600"})
    a, b, c = _nodes(strata, redis_server, 3)
    assert a.get("/p", headers=HOST).content == b"v1"
    for n in (b, c):
        assert "hit" in n.get("/p", headers=HOST).headers["Cache-Status"]  # in their L1
    origin.route("/p", body=b"v2", headers={"Cache-Control": "max-age=600"})
    assert a.purge("/p", headers=HOST).status_code == 200
    assert a.get("/p", headers=HOST).content == b"v2"
    deadline = time.monotonic() + 10  # no clock moved: only the bus can tell B and C
    for n in (b, c):
        while n.get("/p", headers=HOST).content != b"v2":
            assert time.monotonic() < deadline, "the purge did not reach a node"
            time.sleep(0.01)
    assert origin.count("/p") == 2


def test_redis_killed_under_load_no_5xx_and_recovery(strata, origin, redis_server):
    """Clients keep asking while Redis dies and comes back: every answer is a
    200 (L1, or the origin), and the shared cache works again afterwards."""
    import threading
    import time
    import redis as redis_py
    import requests
    for i in range(20):
        origin.route("/l/%d" % i, body=b"x%d" % i, headers={"Cache-Control": "max-age=600"})
    (a,) = _nodes(strata, redis_server, 1)
    bad, answered, done = [], [0], threading.Event()

    def load():
        sess = requests.Session()
        i = 0
        while not done.is_set():
            try:
                r = sess.get(a.url + "/l/%d" % (i % 20), headers=HOST, timeout=10)
                if r.status_code != 200:
                    bad.append(r.status_code)
            except requests.RequestException as e:  # a refused or broken connection
                bad.append(repr(e))
            answered[0] += 1
            i += 1

    def wait(pred, what):
        deadline = time.monotonic() + 10
        while not pred():
            assert time.monotonic() < deadline, what
            time.sleep(0.01)

    def errors():
        return a.admin_get("/_strata/stats").json()["caches"]["http"]["errors"]

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait(lambda: answered[0] >= 100, "load with Redis up")
        redis_server.stop()
        e0, n0 = errors(), answered[0]
        wait(lambda: errors() > e0 and answered[0] >= n0 + 100, "load with Redis down")
        redis_server.start()  # same port, empty
        r = redis_py.Redis(port=redis_server.port)
        # the shared cache works again: a response is stored in Redis
        wait(lambda: a.get("/l/0", headers=HOST) is not None
             and r.exists("strata:http:k:h:shop.example/l/0"), "recovery")
    finally:
        done.set()
        for t in threads:
            t.join(20)
    assert bad == [], bad[:10]
