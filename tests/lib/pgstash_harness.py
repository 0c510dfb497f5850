"""
pgstash_harness.py — throwaway PostgreSQL, Redis and pgstash processes for tests and benchmarks.

Every suite (integration, real drivers, fault injection, benchmarks) starts its own servers on
free loopback ports through this module and never touches a system-wide server:

    pg = PostgresServer(); pg.start()          # initdb into a temp dir, roles, database `test`
    redis = RedisServer(); redis.start()
    px = Pgstash(pg, redis, {"log": {"level": "debug"}}); px.start()
    conn = px.connect(user=pg.superuser)       # psycopg2 connection through pgstash
    print(px.stats()["clients"])
    px.stop(); redis.stop(); pg.stop()

Processes are started in their own session and tracked by PID. Whatever is still running when
the Python process exits is killed by PID (never by name) and the temp dirs are removed; a run
that died without cleaning up (SIGKILL) is reaped by the next one that imports this module.
When running as root, PostgreSQL runs as the unprivileged `postgres` OS user.
"""

import atexit
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TMP_ROOT = Path(os.environ.get("PGSTASH_TEST_TMPDIR", "/tmp"))
RUN_PREFIX = "pgstash-test-"
PORT_CLAIM_DIR = TMP_ROOT / "pgstash-test-ports"


def _find_pg_bindir():
    env = os.environ.get("PGSTASH_PG_BINDIR")
    if env:
        return Path(env)
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(re.search(r"/(\d+)/bin/", p).group(1)))
    if cands:
        return Path(cands[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL server binaries (initdb) not found; "
                       "run scripts/install-deps.sh test or set PGSTASH_PG_BINDIR")


PG_BINDIR = None  # resolved lazily, so importing the module never fails


def pg_bindir():
    global PG_BINDIR
    if PG_BINDIR is None:
        PG_BINDIR = _find_pg_bindir()
    return PG_BINDIR


def pgstash_binary():
    """$PGSTASH_BIN, else ./pgstash at the top of the repository."""
    return Path(os.environ.get("PGSTASH_BIN") or REPO_ROOT / "pgstash")


def is_root():
    return os.geteuid() == 0


def pg_os_user():
    """The OS user PostgreSQL runs as: `postgres` when we are root, else ourselves."""
    return "postgres" if is_root() else pwd.getpwuid(os.geteuid()).pw_name


# --------------------------------------------------------------------------------------------
# Process bookkeeping: every PID we start, and the temp dirs, cleaned up at exit.
# --------------------------------------------------------------------------------------------

_lock = threading.RLock()
_tracked = {}      # pid -> (description, cleanup callable or None)
_run_dir = None    # this process's run directory under TMP_ROOT
_claimed_ports = set()
_closers = []      # objects with a _emergency_cleanup() method, newest last


def _proc_starttime(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
        return int(data[data.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid):
    """True if the PID exists and is not a zombie (PID 1 here may never reap orphans)."""
    if not pid:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return False
    state = data[data.rindex(")") + 2:].split()[0]
    return state not in ("Z", "X")


def _pid_cwd_under(pid, directory):
    try:
        return os.path.realpath("/proc/%d/cwd" % pid).startswith(str(directory))
    except OSError:
        return False


def run_dir():
    """This process's private directory under TMP_ROOT; created on first use."""
    global _run_dir
    with _lock:
        if _run_dir is None:
            _reap_stale_runs()
            d = Path(tempfile.mkdtemp(prefix="%s%d-" % (RUN_PREFIX, os.getpid()), dir=TMP_ROOT))
            os.chmod(d, 0o711)  # the postgres OS user must traverse it
            (d / "owner").write_text("%d %s\n" % (os.getpid(), _proc_starttime(os.getpid())))
            _run_dir = d
        return _run_dir


def _record_pid(pid, what):
    with open(run_dir() / "pids", "a") as f:
        f.write("%d %s\n" % (pid, what))


def track(pid, what, cleanup=None):
    """Registers a PID to be killed at exit unless untrack()ed first."""
    with _lock:
        _tracked[pid] = (what, cleanup)
        _record_pid(pid, what)


def untrack(pid):
    with _lock:
        _tracked.pop(pid, None)


def _reap_stale_runs():
    """Kills processes left by earlier runs whose owner died, and removes their dirs."""
    for d in TMP_ROOT.glob(RUN_PREFIX + "*"):
        if d == PORT_CLAIM_DIR or not d.is_dir():
            continue
        try:
            owner_pid, owner_start = (d / "owner").read_text().split()
            owner_pid = int(owner_pid)
        except (OSError, ValueError):
            continue
        if pid_alive(owner_pid) and str(_proc_starttime(owner_pid)) == owner_start:
            continue
        try:
            lines = (d / "pids").read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:
            try:
                pid = int(line.split()[0])
            except (ValueError, IndexError):
                continue
            # Only if the process still lives in that run's directory: PIDs get reused.
            if pid_alive(pid) and _pid_cwd_under(pid, d.resolve()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        shutil.rmtree(d, ignore_errors=True)


def cleanup_all():
    """Kills every tracked process by PID and removes this run's temp dirs. Safe to call twice."""
    global _run_dir
    with _lock:
        for obj in reversed(list(_closers)):
            try:
                obj._emergency_cleanup()
            except Exception:
                pass
        for pid, (what, cleanup) in list(_tracked.items()):
            if cleanup is not None:
                try:
                    cleanup()
                except Exception:
                    pass
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(pid_alive(p) for p in _tracked):
            time.sleep(0.02)
        _tracked.clear()
        for port in list(_claimed_ports):
            _release_port(port)
        if _run_dir is not None and os.environ.get("PGSTASH_TEST_KEEP") != "1":
            shutil.rmtree(_run_dir, ignore_errors=True)
            _run_dir = None


atexit.register(cleanup_all)


def install_signal_cleanup():
    """Turns SIGTERM/SIGHUP into KeyboardInterrupt so finalisers and atexit still run."""
    def handler(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------

def _claim_port(port):
    """Cross-process claim on a port: a file created with O_EXCL, stale once its owner died."""
    try:
        PORT_CLAIM_DIR.mkdir(exist_ok=True)
        if PORT_CLAIM_DIR.stat().st_uid == os.geteuid():
            os.chmod(PORT_CLAIM_DIR, 0o1777)   # shared by every user's test runs (umask aside)
    except OSError:
        pass
    path = PORT_CLAIM_DIR / str(port)
    me = "%d %s" % (os.getpid(), _proc_starttime(os.getpid()))
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                owner_pid, owner_start = path.read_text().split()
                if pid_alive(int(owner_pid)) and str(_proc_starttime(int(owner_pid))) == owner_start:
                    return False
            except (OSError, ValueError):
                pass
            try:
                path.unlink()  # stale
            except OSError:
                return False
            continue
        os.write(fd, me.encode())
        os.close(fd)
        _claimed_ports.add(port)
        return True
    return False


def _release_port(port):
    _claimed_ports.discard(port)
    try:
        (PORT_CLAIM_DIR / str(port)).unlink()
    except OSError:
        pass


def free_port(host="127.0.0.1"):
    """A loopback TCP port nobody listens on, found by binding port 0, and claimed so that
    servers started concurrently (threads or other test processes) never get the same one.
    The claim lasts until this Python process exits."""
    with _lock:
        for _ in range(500):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((host, 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            if port in _claimed_ports:
                continue
            if _claim_port(port):
                return port
        raise RuntimeError("could not find a free port")


def port_accepts(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(cond, timeout=10.0, interval=0.02, message="condition"):
    """Polls cond() until it returns a truthy value, which is returned; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - keep polling, report the last one
            last_exc = e
        if time.monotonic() >= deadline:
            extra = " (last error: %r)" % last_exc if last_exc else ""
            raise TimeoutError("timed out after %.1fs waiting for %s%s" % (timeout, message, extra))
        time.sleep(interval)


def _tail(path, n=60):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError as e:
        return "<no log: %s>" % e


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------

class PostgresServer:
    """A throwaway PostgreSQL cluster on a free loopback port.

    Roles: the superuser (`postgres` when root, else the OS user; trust over 127.0.0.1),
    md5user (md5), scramuser (scram-sha-256). Database `test` exists.
    """

    MD5_USER = "md5user"
    MD5_PASSWORD = "md5-pass-word"
    SCRAM_USER = "scramuser"
    SCRAM_PASSWORD = "scram-pass-word"

    def __init__(self, port=None, conf=None, name="pg"):
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.name = name
        self.extra_conf = conf or {}
        self.os_user = pg_os_user()
        self.superuser = self.os_user
        self.dbname = "test"
        self.dir = Path(tempfile.mkdtemp(prefix=name + "-", dir=run_dir()))
        self.data_dir = self.dir / "data"
        self.sock_dir = self.dir / "sock"
        self.log_path = self.dir / "postgres.log"
        self.initialized = False
        self._pid = None
        _closers.append(self)
        if is_root():
            pw = pwd.getpwnam(self.os_user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    def __repr__(self):
        return "<PostgresServer %s:%d pid=%s>" % (self.host, self.port, self._pid)

    # -- running commands as the PostgreSQL OS user ----------------------------------------------
    def _run(self, args, timeout=120, check=True):
        kw = {}
        if is_root():
            pw = pwd.getpwnam(self.os_user)
            kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        env = dict(os.environ, LC_ALL="C", LANG="C")
        env.pop("PGDATA", None)
        p = subprocess.run([str(a) for a in args], cwd=self.dir, env=env, capture_output=True,
                           text=True, timeout=timeout, start_new_session=True, **kw)
        if check and p.returncode != 0:
            raise RuntimeError("%s failed (%d):\n%s\n%s\n--- log ---\n%s" % (
                " ".join(map(str, args)), p.returncode, p.stdout, p.stderr, _tail(self.log_path)))
        return p

    def init(self):
        """initdb, postgresql.conf, pg_hba.conf. Called by the first start()."""
        if self.initialized:
            return
        self._run([pg_bindir() / "initdb", "-D", self.data_dir, "-U", self.superuser,
                   "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"])
        if is_root():
            pw = pwd.getpwnam(self.os_user)
        self.sock_dir.mkdir(exist_ok=True)
        if is_root():
            os.chown(self.sock_dir, pw.pw_uid, pw.pw_gid)
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "'%s'" % self.sock_dir,
            "max_connections": "300",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "64MB",
            "password_encryption": "'scram-sha-256'",
            "logging_collector": "off",
            "log_destination": "'stderr'",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            "log_connections": "on",
            "log_disconnections": "on",
            "lc_messages": "'C'",
        }
        conf.update({k: str(v) for k, v in self.extra_conf.items()})
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write("\n# pgstash test harness\n")
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, v))
        hba = (
            "# pgstash test harness\n"
            "local all all trust\n"
            "host all %s 127.0.0.1/32 md5\n"
            "host all %s 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n" % (self.MD5_USER, self.SCRAM_USER)
        )
        (self.data_dir / "pg_hba.conf").write_text(hba)
        self.initialized = "pending-sql"

    def _setup_sql(self):
        self.sql("CREATE DATABASE %s" % self.dbname, dbname="postgres")
        self.sql("SET password_encryption = 'md5'; "
                 "CREATE ROLE %s LOGIN PASSWORD '%s'" % (self.MD5_USER, self.MD5_PASSWORD),
                 dbname="postgres")
        self.sql("SET password_encryption = 'scram-sha-256'; "
                 "CREATE ROLE %s LOGIN PASSWORD '%s'" % (self.SCRAM_USER, self.SCRAM_PASSWORD),
                 dbname="postgres")
        self.sql("GRANT ALL ON SCHEMA public TO %s, %s" % (self.MD5_USER, self.SCRAM_USER))
        self.initialized = True

    @property
    def pid(self):
        """The postmaster's PID, from postmaster.pid (None when not running)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def is_running(self):
        return self.pid is not None

    def start(self, timeout=60):
        """Starts the cluster (initdb first if needed) and waits until it accepts connections.
        Retries while the port or old shared memory is still held by a killed predecessor."""
        self.init()
        deadline = time.monotonic() + timeout
        while True:
            p = self._run([pg_bindir() / "pg_ctl", "-D", self.data_dir, "-l", self.log_path,
                           "-w", "-t", str(max(5, int(deadline - time.monotonic()))), "start"],
                          check=False, timeout=timeout + 10)
            if p.returncode == 0 and self.pid:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("pg_ctl start failed (%d): %s%s\n--- log ---\n%s" % (
                    p.returncode, p.stdout, p.stderr, _tail(self.log_path)))
            time.sleep(0.2)
        self._pid = self.pid
        track(self._pid, "postgres %s" % self.data_dir, None)
        wait_until(lambda: port_accepts(self.host, self.port), timeout=30,
                   message="PostgreSQL port %d" % self.port)
        if self.initialized == "pending-sql":
            self._setup_sql()
        return self

    def stop(self, mode="fast", timeout=60):
        """pg_ctl stop -m fast|smart|immediate; falls back to SIGKILL."""
        pid = self.pid
        if pid is None:
            return
        p = self._run([pg_bindir() / "pg_ctl", "-D", self.data_dir, "-m", mode, "-w", "-t",
                       str(timeout), "stop"], check=False, timeout=timeout + 10)
        if p.returncode != 0 and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), timeout=10, message="postmaster %d to exit" % pid)
        untrack(pid)
        self._pid = None

    def restart(self, mode="fast"):
        self.stop(mode)
        return self.start()

    def kill(self):
        """SIGKILL the postmaster (a crash). Its backends exit when they notice."""
        pid = self.pid
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), timeout=10, message="postmaster %d to die" % pid)
        untrack(pid)
        self._pid = None

    def _emergency_cleanup(self):
        if self.pid:
            self._run([pg_bindir() / "pg_ctl", "-D", self.data_dir, "-m", "immediate", "-w",
                       "-t", "10", "stop"], check=False, timeout=20)

    def destroy(self):
        """Stops the server and removes its directory."""
        try:
            self.stop("immediate")
        finally:
            if self in _closers:
                _closers.remove(self)
            _release_port(self.port)
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- clients ------------------------------------------------------------------------------------
    def dsn(self, user=None, dbname=None, password=None, port=None, host=None, **kw):
        return make_dsn(host or self.host, port or self.port, user or self.superuser,
                        dbname or self.dbname, password, **kw)

    def connect(self, user=None, dbname=None, password=None, autocommit=True, **kw):
        """A psycopg2 connection straight to PostgreSQL."""
        import psycopg2
        conn = psycopg2.connect(self.dsn(user, dbname, password, **kw))
        conn.autocommit = autocommit
        return conn

    def sql(self, query, params=None, dbname=None):
        """Runs SQL as the superuser (autocommit); returns fetched rows or None. Lock waits and
        statements are bounded, so a lock left behind by a broken session cannot hang a test."""
        conn = self.connect(dbname=dbname, options="-c lock_timeout=60s -c statement_timeout=300s")
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def backend_pids(self, **where):
        """PIDs of client backends (pg_stat_activity), filtered by column=value, excluding ours."""
        cond = " AND ".join("%s = %%s" % k for k in where) or "true"
        rows = self.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
                        "AND pid <> pg_backend_pid() AND " + cond, tuple(where.values()),
                        dbname="postgres")
        return {r[0] for r in rows}

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def make_dsn(host, port, user, dbname, password=None, **kw):
    """A libpq keyword/value connection string."""
    def q(v):
        v = str(v)
        if v == "" or re.search(r"[\s'\\]", v):
            return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return v
    parts = {"host": host, "port": port, "user": user, "dbname": dbname}
    if password is not None:
        parts["password"] = password
    parts.setdefault("connect_timeout", 10)
    parts.update(kw)
    return " ".join("%s=%s" % (k, q(v)) for k, v in parts.items() if v is not None)


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------

class RedisError(Exception):
    pass


class RedisClient:
    """A tiny blocking RESP client: enough for tests to look at keys and counters."""

    def __init__(self, host, port, password=None, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.f = self.sock.makefile("rb")
        if password:
            self.command("AUTH", password)

    def close(self):
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass

    def command(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._read()

    def _read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RedisError("bad RESP reply %r" % line)


class RedisServer:
    """A throwaway redis-server on a free loopback port: no persistence, allkeys-lru."""

    def __init__(self, port=None, password=None, maxmemory="256mb", name="redis",
                 extra_args=()):
        self.host = "127.0.0.1"
        self.extra_args = [str(a) for a in extra_args]   # more redis-server options
        self.port = port or free_port()
        self.password = password
        self.maxmemory = maxmemory
        self.dir = Path(tempfile.mkdtemp(prefix=name + "-", dir=run_dir()))
        self.log_path = self.dir / "redis.log"
        self.proc = None
        self.paused = False
        _closers.append(self)

    def __repr__(self):
        return "<RedisServer %s:%d pid=%s>" % (self.host, self.port, self.pid)

    @property
    def url(self):
        auth = ":%s@" % self.password if self.password else ""
        return "redis://%s%s:%d/0" % (auth, self.host, self.port)

    @property
    def pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def is_running(self):
        return self.pid is not None

    def start(self, timeout=20, wait=True):
        """Starts redis-server; with wait=False returns at once (e.g. while it loads a
        snapshot and answers LOADING)."""
        args = ["redis-server", "--port", str(self.port), "--bind", self.host,
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--protected-mode", "no", "--maxmemory", self.maxmemory,
                "--maxmemory-policy", "allkeys-lru", "--dir", str(self.dir),
                "--logfile", str(self.log_path), "--databases", "16"] + self.extra_args
        if self.password:
            args += ["--requirepass", self.password]
        deadline = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(args, cwd=self.dir, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)
            track(self.proc.pid, "redis-server :%d" % self.port, None)
            if not wait:
                return self
            try:
                wait_until(self._ping_or_dead, timeout=max(1, deadline - time.monotonic()),
                           message="redis on port %d" % self.port)
            except TimeoutError:
                self.kill()
                raise
            if self.proc.poll() is None:
                break
            untrack(self.proc.pid)
            # Exited: typically the port is still held (restart on the same port); retry.
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server exited (%s):\n%s" % (self.proc.returncode,
                                                                      _tail(self.log_path)))
            time.sleep(0.2)
        self.paused = False
        return self

    def _ping_or_dead(self):
        if self.proc.poll() is not None:
            return True
        try:
            return self.command("PING") == "PONG"
        except (OSError, RedisError):
            return False

    def command(self, *args):
        c = RedisClient(self.host, self.port, self.password)
        try:
            return c.command(*args)
        finally:
            c.close()

    def client(self):
        return RedisClient(self.host, self.port, self.password)

    def flushall(self):
        return self.command("FLUSHALL")

    def _wait_exit(self, timeout):
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self, timeout=10):
        if not self.pid:
            return
        pid = self.proc.pid
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(timeout):
            os.kill(pid, signal.SIGKILL)
            self.proc.wait(10)
        untrack(pid)
        self.paused = False

    def kill(self):
        """SIGKILL (a crash)."""
        if not self.pid:
            return
        pid = self.proc.pid
        os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        untrack(pid)
        self.paused = False

    def pause(self):
        """SIGSTOP: the port still accepts connections (kernel backlog) but nothing answers."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def restart(self):
        """Stop and start again on the SAME port (contents are lost: no persistence)."""
        self.stop()
        return self.start()

    def _emergency_cleanup(self):
        if self.pid:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGKILL)

    def destroy(self):
        try:
            self.kill()
        finally:
            if self in _closers:
                _closers.remove(self)
            _release_port(self.port)
            shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# pgstash
# --------------------------------------------------------------------------------------------

def deep_merge(base, over):
    """A copy of `base` with `over` merged in; a value of None in `over` deletes the key."""
    out = dict(base)
    for k, v in (over or {}).items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


_YAML_PLAIN = re.compile(r"^[A-Za-z0-9_./@+-][A-Za-z0-9_./:@+-]*$")
_YAML_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _YAML_PLAIN.match(s) and s.lower() not in _YAML_RESERVED and not s.endswith(":"):
        return s
    return json.dumps(s)


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts of dicts/lists/scalars (what pgstash's config needs)."""
    pad = "  " * indent
    lines = []
    for k, v in obj.items():
        key = _yaml_scalar(k)
        if isinstance(v, dict):
            if v:
                lines.append("%s%s:" % (pad, key))
                lines.append(to_yaml(v, indent + 1))
            else:
                lines.append("%s%s: {}" % (pad, key))
        elif isinstance(v, (list, tuple)):
            if v and all(isinstance(x, dict) for x in v):
                lines.append("%s%s:" % (pad, key))
                for x in v:
                    sub = to_yaml(x, indent + 2).lstrip()
                    lines.append("%s  - %s" % (pad, sub))
            else:
                lines.append("%s%s: [%s]" % (pad, key, ", ".join(_yaml_scalar(x) for x in v)))
        else:
            lines.append("%s%s: %s" % (pad, key, _yaml_scalar(v)))
    return "\n".join(lines)


class PgstashError(RuntimeError):
    pass


class Pgstash:
    """One pgstash process with a generated YAML config, started in its own session.

    `config` is merged over test defaults (listen/admin on free ports, upstream = pg,
    redis = redis, workers 2, log level info, stats_interval 1s); None deletes a key.
    """

    is_direct = False

    def __init__(self, pg=None, redis=None, config=None, binary=None, args=(), name="pgstash",
                 env=None):
        self.pg = pg
        self.redis = redis
        self.binary = Path(binary) if binary else pgstash_binary()
        self.extra_args = list(args)
        self.env = env
        self.host = "127.0.0.1"
        self.port = free_port()
        self.admin_port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=name + "-", dir=run_dir()))
        self.config_path = self.dir / "pgstash.yaml"
        self.log_path = self.dir / "pgstash.log"
        self.proc = None
        self.expect_exit = False   # set when a test stops/kills it on purpose
        self.config = deep_merge(self.default_config(), config)
        self._apply_ports_from_config()
        self.write_config()
        _closers.append(self)

    def __repr__(self):
        return "<Pgstash %s:%d pid=%s>" % (self.host, self.port, self.pid)

    def default_config(self):
        cfg = {
            "listen": "%s:%d" % (self.host, self.port),
            "workers": 2,
            "log": {"level": "info", "stats_interval": "1s"},
            "admin": {"listen": "%s:%d" % (self.host, self.admin_port)},
            # Tests stop pgstash often: don't let a forgotten session hold SIGTERM for 30 s.
            "limits": {"shutdown_grace": "5s"},
        }
        if self.pg is not None:
            cfg["upstream"] = "%s:%d" % (self.pg.host, self.pg.port)
            cfg["catalog"] = {"user": self.pg.superuser}
        if self.redis is not None:
            cfg["redis"] = self.redis.url
        return cfg

    def _apply_ports_from_config(self):
        def hp(text):
            host, _, port = str(text).rpartition(":")
            return host.strip("[]"), int(port)
        if "listen" in self.config:
            self.host, self.port = hp(self.config["listen"])
        admin = self.config.get("admin") or {}
        self.admin_port = hp(admin["listen"])[1] if "listen" in admin else None
        # A --listen override on the command line wins over the file, as in pgstash itself.
        for i, a in enumerate(self.extra_args):
            if a == "--listen" and i + 1 < len(self.extra_args):
                self.host, self.port = hp(self.extra_args[i + 1])
            elif a.startswith("--listen="):
                self.host, self.port = hp(a.split("=", 1)[1])

    def write_config(self, config=None):
        """(Re)writes the YAML file; with `config`, merges it over the current one first."""
        if config is not None:
            self.config = deep_merge(self.config, config)
            self._apply_ports_from_config()
        self.config_path.write_text("# written by tests/lib/pgstash_harness.py\n"
                                    + to_yaml(self.config) + "\n")

    def write_config_text(self, text):
        self.config_path.write_text(text)

    # -- process control ------------------------------------------------------------------------
    @property
    def pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def is_running(self):
        return self.pid is not None

    @property
    def returncode(self):
        return self.proc.poll() if self.proc else None

    def command_line(self):
        return [str(self.binary), "-c", str(self.config_path)] + self.extra_args

    def start(self, wait=True, timeout=20):
        if not self.binary.exists():
            raise PgstashError("pgstash binary not found at %s (run `make`, or set PGSTASH_BIN)"
                               % self.binary)
        self.expect_exit = False
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.command_line(), cwd=self.dir,
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True,
                                         env=dict(os.environ, **(self.env or {})))
        finally:
            logf.close()
        track(self.proc.pid, "pgstash :%d" % self.port, None)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=20):
        """Waits until the listen port accepts TCP; raises with the log tail if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise PgstashError("pgstash exited with %s before accepting connections\n"
                                   "--- %s ---\n%s" % (self.proc.returncode, self.log_path,
                                                       self.log_tail()))
            if port_accepts(self.host, self.port, timeout=0.2):
                return
            if time.monotonic() > deadline:
                raise PgstashError("pgstash did not accept on %s:%d within %ss\n--- %s ---\n%s"
                                   % (self.host, self.port, timeout, self.log_path,
                                      self.log_tail()))
            time.sleep(0.02)

    def wait_exit(self, timeout=15):
        """Waits for the process to exit; returns its exit code (None on timeout)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal(self, sig):
        if self.pid:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit code (negative = signal)."""
        self.expect_exit = True
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            if self.wait_exit(timeout) is None:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        untrack(self.proc.pid)
        return self.proc.returncode

    def kill(self):
        self.expect_exit = True
        if self.pid:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.proc:
            untrack(self.proc.pid)

    def reload(self):
        """SIGHUP: pgstash re-reads its YAML file."""
        os.kill(self.proc.pid, signal.SIGHUP)

    def _emergency_cleanup(self):
        if self.pid:
            os.kill(self.proc.pid, signal.SIGKILL)

    def destroy(self):
        try:
            self.kill()
        finally:
            if self in _closers:
                _closers.remove(self)
            _release_port(self.port)
            if self.admin_port:
                _release_port(self.admin_port)
            if os.environ.get("PGSTASH_TEST_KEEP") != "1":
                shutil.rmtree(self.dir, ignore_errors=True)

    # -- observation -----------------------------------------------------------------------------
    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=60):
        return _tail(self.log_path, n)

    def http_get(self, path, timeout=5.0):
        """(status, body bytes) of GET http://admin.listen/path."""
        if not self.admin_port:
            raise PgstashError("admin.listen is not configured")
        url = "http://%s:%d%s" % (self.host, self.admin_port, path)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stats(self, timeout=5.0):
        """GET /stats as a dict (retries briefly while the admin port comes up)."""
        def get():
            status, body = self.http_get("/stats", timeout=timeout)
            if status != 200:
                raise PgstashError("GET /stats -> %d: %r" % (status, body[:200]))
            return json.loads(body)
        return wait_until(get, timeout=timeout, message="GET /stats")

    def wait_stats(self, predicate, timeout=10.0, message="a /stats condition"):
        """Polls /stats until predicate(stats) is true; returns those stats. For tests that
        assert on counters ("the second run was a hit") instead of sleeping."""
        last = {}

        def check():
            s = self.stats()
            last.clear()
            last.update(s)
            return s if predicate(s) else None
        try:
            return wait_until(check, timeout=timeout, message=message)
        except TimeoutError as e:
            raise TimeoutError("%s; last /stats: %s" % (e, json.dumps(last)[:800])) from None

    def metrics(self):
        return self.http_get("/metrics")[1].decode()

    def healthz(self):
        return self.http_get("/healthz")[0]

    def rss_kb(self):
        """Resident set size in KiB, from /proc/PID/status."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise PgstashError("no VmRSS for pid %d" % self.proc.pid)

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    # -- clients --------------------------------------------------------------------------------
    def dsn(self, user=None, dbname=None, password=None, **kw):
        user = user or (self.pg.superuser if self.pg else pg_os_user())
        dbname = dbname or (self.pg.dbname if self.pg else "test")
        return make_dsn(self.host, self.port, user, dbname, password, **kw)

    def connect(self, user=None, dbname=None, password=None, autocommit=True, **kw):
        """A psycopg2 connection through pgstash."""
        import psycopg2
        conn = psycopg2.connect(self.dsn(user, dbname, password, **kw))
        conn.autocommit = autocommit
        return conn


class DirectTarget:
    """Stands in for a Pgstash in DIRECT MODE: same client-facing attributes, but the port is
    PostgreSQL's own, so a test suite can be run against PostgreSQL to prove the tests right."""

    is_direct = True
    pid = None
    admin_port = None

    def __init__(self, pg):
        self.pg = pg
        self.host = pg.host
        self.port = pg.port
        self.expect_exit = True

    def __repr__(self):
        return "<DirectTarget %s:%d>" % (self.host, self.port)

    def dsn(self, user=None, dbname=None, password=None, **kw):
        return make_dsn(self.host, self.port, user or self.pg.superuser, dbname or self.pg.dbname,
                        password, **kw)

    def connect(self, user=None, dbname=None, password=None, autocommit=True, **kw):
        import psycopg2
        conn = psycopg2.connect(self.dsn(user, dbname, password, **kw))
        conn.autocommit = autocommit
        return conn

    def is_running(self):
        return self.pg.is_running()

    def _unsupported(self, *a, **kw):
        raise PgstashError("not available in direct mode (PGSTASH_TEST_DIRECT=1)")

    start = stop = kill = reload = stats = metrics = healthz = rss_kb = fd_count = _unsupported
    wait_ready = _unsupported

    def log_text(self):
        return ""

    def log_tail(self, n=60):
        return ""

    def destroy(self):
        pass
