"""
node-postgres (`pg` from npm, pinned in node/package-lock.json) running the scripted session
against PostgreSQL and through pgstash: unnamed extended-protocol statements, named prepared
statements (`name:`) for the repeated read and the totals, simple-protocol BEGIN/COMMIT/ROLLBACK.
(pg's `binary: true` mode is not covered: pg 8.x cannot parse its own binary results, e.g.
int4 or timestamptz, even straight against PostgreSQL.)

node_modules is installed with `npm ci` into tests/clients/node/node_modules (git-ignored), and
only when it is missing or was installed from a different package-lock.json.
"""

import hashlib
import json
import shutil
import subprocess

import pytest

from clientlib import HERE, checkpoint_server, env_for_subprocess, run_both

NODE_DIR = HERE / "node"
STAMP = NODE_DIR / "node_modules" / ".pgstash-lock.sha256"


def _lock_hash():
    return hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def node_pg():
    """`node`, with pg installed from the lock file (npm ci, skipped when already done)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node/npm not found: scripts/install-deps.sh clients installs them"
    want = _lock_hash()
    if not (STAMP.exists() and STAMP.read_text().strip() == want
            and (NODE_DIR / "node_modules" / "pg" / "package.json").exists()):
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=NODE_DIR, capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, "npm ci failed (%d):\n%s\n%s" % (r.returncode, r.stdout,
                                                                    r.stderr)
        STAMP.write_text(want + "\n")
    return node


def _runner(node):
    def run(host, port, user, dbname, table, ck):
        with checkpoint_server(ck) as srv:
            cfg = {"host": host, "port": port, "user": user, "database": dbname,
                   "table": table, "ckpt": srv.url}
            p = subprocess.run([node, str(NODE_DIR / "session.js"), json.dumps(cfg)],
                               cwd=NODE_DIR, capture_output=True, text=True, timeout=120,
                               env=env_for_subprocess())
        assert p.returncode == 0, "node session.js failed against %s:%s (%d):\n%s" % (
            host, port, p.returncode, p.stderr[-4000:])
        return json.loads(p.stdout)
    return run


def test_node_pg(pg, px, node_pg):
    run_both("node-pg", pg, px, _runner(node_pg))
