"""
psycopg2 (simple protocol, client-side parameters) and psycopg 3 (extended protocol: the default
prepare threshold of 5, prepare_threshold=0, prepare_threshold=None, and binary mode; plus
pipeline mode), each running the scripted session against PostgreSQL and through pgstash.
"""

import pytest

from clientlib import run_both
from pysession import Psycopg2, Psycopg3, Session


def _runner(adapter):
    def run(host, port, user, dbname, table, ck):
        return Session(adapter, host, port, user, dbname, table, ck).run()
    return run


def test_psycopg2(pg, px):
    run_both("psycopg2", pg, px, _runner(Psycopg2()))


@pytest.mark.parametrize("variant", ["default", "prepare0", "prepare0-max2", "noprepare",
                                     "binary"])
def test_psycopg3(pg, px, variant):
    run_both("psycopg3-" + variant, pg, px, _runner(Psycopg3(variant)),
             extra_checks=lambda tr: _prepared(tr, variant),
             # pipeline mode: the repeated read twice in one unit (one Sync), both hits
             expect={"pipeline": dict(hits=2, misses=0, bypass_total=0)})


def _prepared(transcript, variant):
    """The repeated read crossed psycopg's prepare_threshold: it is a named statement now
    (none at all with prepare_threshold=None)."""
    names = [v for s, v in transcript if s == "prepared"]
    if names == [None]:
        return ["cannot see psycopg's prepared statements (psycopg internals changed?)"]
    if variant == "noprepare":
        return [] if names == [[]] else ["prepared statements with prepare_threshold=None: %s"
                                         % names]
    if len(names) != 1 or not names[0]:
        return ["the repeated read was never prepared (prepared statements: %s)" % names]
    return []
