"""
Many clients at once through one pgstash: 200 simultaneous connections, each with its own
backend, and a mixed simple/extended workload whose every answer is checked.
"""

import random
import threading

import psycopg
import psycopg2
import pytest

from helpers import unique
from pgstash_harness import wait_until

N_CLIENTS = 200


@pytest.mark.timeout(180)
def test_200_concurrent_connections(pg, proxy):
    app = unique("conc")
    connected = threading.Barrier(N_CLIENTS + 1, timeout=90)
    go = threading.Barrier(N_CLIENTS + 1, timeout=90)
    results = [None] * N_CLIENTS
    errors = []

    def client(i):
        conn = None
        try:
            conn = psycopg2.connect(proxy.dsn(application_name=app))
            conn.autocommit = True
            connected.wait()
            go.wait()
            cur = conn.cursor()
            cur.execute("SELECT %s, pg_backend_pid(), sum(g) FROM generate_series(1, %s) g",
                        (i, 1000 + i))
            results[i] = cur.fetchone()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append((i, repr(e)))
            connected.abort()
            go.abort()
        finally:
            if conn is not None:
                conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(N_CLIENTS)]
    for t in threads:
        t.start()
    try:
        connected.wait()
        # All 200 are connected at the same time, each with its own backend.
        assert len(pg.backend_pids(application_name=app)) == N_CLIENTS
        go.wait()
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]
    for i, r in enumerate(results):
        n = 1000 + i
        assert r is not None and r[0] == i and r[2] == n * (n + 1) // 2, (i, r)
    assert len({r[1] for r in results}) == N_CLIENTS, "backends shared between clients"
    wait_until(lambda: not pg.backend_pids(application_name=app), timeout=20,
               message="all 200 backends to exit")


@pytest.mark.timeout(180)
def test_mixed_concurrent_workload(pg, proxy):
    """40 clients, simple and extended protocol, small and large results, transactions."""
    table = unique("mixed")
    pg.sql("CREATE TABLE %s (client int, n int, payload text)" % table)
    errors = []

    def client(i):
        rnd = random.Random(i)
        try:
            if i % 2:
                conn = psycopg2.connect(proxy.dsn())
                conn.autocommit = True
                cur = conn.cursor()
                run = cur.execute
                fetch = cur.fetchall
            else:
                conn = psycopg.connect(proxy.dsn(), autocommit=True)
                cur = conn.cursor()
                run = lambda q, p=None: cur.execute(q, p, prepare=rnd.random() < 0.5)  # noqa
                fetch = cur.fetchall
            with conn:
                for n in range(30):
                    kind = rnd.choice(["small", "large", "write", "tx"])
                    if kind == "small":
                        run("SELECT %s::int * 3", (n,))
                        assert fetch() == [(n * 3,)]
                    elif kind == "large":
                        rows = rnd.randint(100, 3000)
                        run("SELECT g, repeat(%s, 100) FROM generate_series(1, %s) g",
                            ("ab", rows))
                        got = fetch()
                        assert len(got) == rows and got[-1] == (rows, "ab" * 100)
                    elif kind == "write":
                        run("INSERT INTO %s VALUES (%%s, %%s, %%s)" % table, (i, n, "p" * n))
                    else:
                        run("BEGIN")
                        run("INSERT INTO %s VALUES (%%s, %%s, 'tx')" % table, (i, n))
                        run("SELECT count(*) FROM %s WHERE client = %%s AND n = %%s" % table,
                            (i, n))
                        assert fetch() == [(1,)]
                        run("ROLLBACK")
            conn.close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert not errors, errors[:5]
        assert pg.sql("SELECT count(*) FROM %s WHERE payload = 'tx'" % table) == [(0,)]
    finally:
        pg.sql("DROP TABLE %s" % table)
