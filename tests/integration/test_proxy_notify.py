"""
LISTEN/NOTIFY through pgstash: notifications reach an idle listener asynchronously, from
sessions through pgstash and from direct ones, in order, only at commit.
"""

import select
import time

from helpers import raw_session, unique


def wait_notifies(conn, count, timeout=10.0):
    """Waits (select on the socket, no sleeps) until `count` notifications have arrived."""
    deadline = time.monotonic() + timeout
    conn.poll()
    while len(conn.notifies) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("got %d of %d notifications after %ss: %r"
                                 % (len(conn.notifies), count, timeout, conn.notifies))
        select.select([conn], [], [], left)
        conn.poll()
    return list(conn.notifies)


def test_notify_reaches_idle_listener(pg, proxy):
    channel = unique("chan")
    listener = proxy.connect()
    sender = proxy.connect()
    try:
        listener.cursor().execute("LISTEN %s" % channel)
        cur = sender.cursor()
        cur.execute("SELECT pg_backend_pid()")
        sender_pid = cur.fetchone()[0]
        cur.execute("NOTIFY %s, 'hello \u2603'" % channel)
        n = wait_notifies(listener, 1)
        assert (n[0].channel, n[0].payload, n[0].pid) == (channel, "hello \u2603", sender_pid)
    finally:
        listener.close()
        sender.close()


def test_notify_from_direct_session_and_ordering(pg, proxy):
    channel = unique("chan")
    listener = proxy.connect()
    try:
        listener.cursor().execute("LISTEN %s" % channel)
        direct = pg.connect()
        try:
            cur = direct.cursor()
            for i in range(100):
                cur.execute("SELECT pg_notify(%s, %s)", (channel, "msg %d" % i))
        finally:
            direct.close()
        n = wait_notifies(listener, 100)
        assert [x.payload for x in n] == ["msg %d" % i for i in range(100)]
    finally:
        listener.close()


def test_notify_delivered_only_at_commit(pg, proxy):
    channel = unique("chan")
    listener = proxy.connect()
    sender = proxy.connect(autocommit=False)
    try:
        listener.cursor().execute("LISTEN %s" % channel)
        cur = sender.cursor()
        cur.execute("NOTIFY %s, 'rolled back'" % channel)
        sender.rollback()
        cur.execute("NOTIFY %s, 'committed'" % channel)
        # Nothing may arrive before the commit: a round trip on the listener proves it.
        listener.cursor().execute("SELECT 1")
        listener.poll()
        assert listener.notifies == []
        sender.commit()
        n = wait_notifies(listener, 1)
        assert [x.payload for x in n] == ["committed"]
    finally:
        listener.close()
        sender.close()


def test_notification_message_raw(pg, proxy):
    """NotificationResponse ('A') arrives unsolicited on an idle raw session."""
    channel = unique("chan")
    with raw_session(proxy, pg.superuser) as c:
        c.simple_query("LISTEN %s" % channel)
        pg.sql("NOTIFY %s, 'raw payload'" % channel)
        m = c.read_msg(timeout=10)
        assert m.type == "A"
        pid, ch, payload = m.notification
        assert (ch, payload) == (channel, "raw payload") and pid > 0
        msgs = c.simple_query("UNLISTEN *")
        assert msgs[-1].type == "Z"
