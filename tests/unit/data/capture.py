#!/usr/bin/env python3
"""Records the two byte streams of PostgreSQL sessions, for the framing unit tests.

    capture.py LISTEN_PORT UPSTREAM_PORT OUT_PREFIX

Relays one connection at a time from 127.0.0.1:LISTEN_PORT to 127.0.0.1:UPSTREAM_PORT and
appends what each side sent to OUT_PREFIX.frontend / OUT_PREFIX.backend (start-up packets
included). Stops after the first connection that closes. Not part of the test run.
"""
import selectors
import socket
import sys

listen_port, upstream_port, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen_port))
srv.listen(1)
conn, _ = srv.accept()
up = socket.create_connection(("127.0.0.1", upstream_port))
sel = selectors.DefaultSelector()
sel.register(conn, selectors.EVENT_READ, (up, open(prefix + ".frontend", "ab")))
sel.register(up, selectors.EVENT_READ, (conn, open(prefix + ".backend", "ab")))
while True:
    for key, _ in sel.select():
        other, out = key.data
        data = key.fileobj.recv(65536)
        if not data:
            sys.exit(0)
        out.write(data)
        out.flush()
        other.sendall(data)
