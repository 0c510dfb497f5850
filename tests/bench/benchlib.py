"""
benchlib.py — throwaway servers for the benchmarks: PostgreSQL, Redis, PgBouncer, Pgpool-II and
pgstash on free loopback ports, plus a pgbench runner that parses pgbench's summary and its
per-transaction logs.

Everything lives in one run directory under .bench/ (git-ignored). Every process is started in
its own session, recorded by PID (with its start time, so a reused PID is never mistaken for
ours) and stopped by that PID: at the end, on an exception, and on SIGINT/SIGTERM/SIGHUP.
A run that was SIGKILLed is reaped by the next one. When running as root, PostgreSQL,
PgBouncer and Pgpool-II run as the unprivileged `postgres` OS user (setuid in the child, so the
PID we hold is the server's own, not a wrapper's).

Used by bench.py (`make bench`) and callgrind.py (tests/bench/callgrind.sh).
"""

import glob
import json
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / ".bench"
PORT_CLAIM_DIR = Path("/tmp/pgstash-test-ports")  # shared with tests/lib/pgstash_harness.py
DB = "bench"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


def pg_bindir():
    env = os.environ.get("PGSTASH_PG_BINDIR")
    if env:
        return Path(env)
    if Path("/usr/lib/postgresql/15/bin/postgres").exists():
        return Path("/usr/lib/postgresql/15/bin")
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(re.search(r"/(\d+)/bin/", p).group(1)))
    if not cands:
        raise BenchError("PostgreSQL server binaries not found: run scripts/install-deps.sh bench")
    return Path(cands[-1]).parent


def need(cmd):
    path = shutil.which(cmd) or next((p for p in ("/usr/sbin/" + cmd, "/usr/bin/" + cmd)
                                      if os.path.exists(p)), None)
    if not path:
        raise BenchError("%s not found: run scripts/install-deps.sh bench" % cmd)
    return path


def is_root():
    return os.geteuid() == 0


def server_user():
    """(name, uid, gid) the servers run as: `postgres` when we are root, else ourselves."""
    pw = pwd.getpwnam("postgres") if is_root() else pwd.getpwuid(os.geteuid())
    return pw.pw_name, pw.pw_uid, pw.pw_gid


# --------------------------------------------------------------------------------------------
# Process bookkeeping
# --------------------------------------------------------------------------------------------

def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            data = f.read()
        return data[data.rindex(")") + 2:].split()
    except (OSError, ValueError):
        return None


def proc_starttime(pid):
    fields = proc_stat(pid)
    try:
        return int(fields[19]) if fields else None
    except (ValueError, IndexError):
        return None


def pid_alive(pid):
    """True if the PID exists and is not a zombie."""
    fields = proc_stat(pid)
    return bool(fields) and fields[0] not in ("Z", "X")


def _group_stats(pgid):
    """(pid, stat fields) of the live (not zombie) processes whose process group is pgid."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        fields = proc_stat(d)
        if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            yield int(d), fields


def group_members(pgid):
    """PIDs (not zombies) whose process group is pgid. Every process we start leads its own
    session, so its group holds exactly what it forked (e.g. Pgpool-II's children)."""
    return [pid for pid, _ in _group_stats(pgid)]


def group_cpu_seconds(pgid):
    """User + system CPU seconds used so far by the live members of process group pgid (all
    their threads; Pgpool-II's children included), or None when the group is empty."""
    ticks = [int(f[11]) + int(f[12]) for _, f in _group_stats(pgid)]
    return sum(ticks) / os.sysconf("SC_CLK_TCK") if ticks else None


def kill_group_leftovers(pgid):
    """SIGKILLs what is left in the group of a process we started once its leader is gone,
    e.g. Pgpool-II children whose parent was SIGKILLed. A PGID cannot be handed out again
    while the group has members, so these are ours."""
    for pid in group_members(pgid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def proc_status(pid, field):
    """A field of /proc/PID/status (e.g. VmRSS) in kB, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


class Interrupted(KeyboardInterrupt):
    pass


_critical = {"depth": 0, "pending": None}


def _raise_interrupt(signum, frame):
    if _critical["depth"]:
        _critical["pending"] = signum   # raised once the PID is on record (see spawn)
        return
    raise Interrupted("signal %d" % signum)


def install_signal_handlers():
    """SIGINT, SIGTERM and SIGHUP all raise KeyboardInterrupt, so `finally` blocks stop what
    we started."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _raise_interrupt)


def ignore_signals():
    """Called when cleanup starts: a second Ctrl-C must not cut the cleanup short."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)


class RunDir:
    """One run's directory under .bench/, its PID ledger and the processes it started."""

    def __init__(self, prefix="run", keep=False):
        BENCH_DIR.mkdir(exist_ok=True)
        reap_stale_runs()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = BENCH_DIR / ("%s-%s-%d" % (prefix, stamp, os.getpid()))
        self.path.mkdir()
        os.chmod(BENCH_DIR, 0o755)
        os.chmod(self.path, 0o755)  # the postgres OS user must traverse it
        (self.path / "owner").write_text("%d %s\n" % (os.getpid(), proc_starttime(os.getpid())))
        self.keep = keep
        self.procs = []          # Popen objects, in start order
        self.ports = []
        self.closed = False

    def subdir(self, name, owned_by_server_user=False):
        d = self.path / name
        d.mkdir(exist_ok=True)
        if owned_by_server_user and is_root():
            _, uid, gid = server_user()
            os.chown(d, uid, gid)
        return d

    # -- ports -------------------------------------------------------------------------------
    def free_port(self):
        """A loopback port nobody listens on, claimed in /tmp/pgstash-test-ports (the same
        claim files the test harness uses) so concurrent runs never pick the same one."""
        PORT_CLAIM_DIR.mkdir(mode=0o1777, exist_ok=True)
        me = "%d %s" % (os.getpid(), proc_starttime(os.getpid()))
        for _ in range(500):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            claim = PORT_CLAIM_DIR / str(port)
            try:
                fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    opid, ostart = claim.read_text().split()
                    if pid_alive(int(opid)) and str(proc_starttime(int(opid))) == ostart:
                        continue
                    claim.unlink()
                except (OSError, ValueError):
                    pass
                continue
            os.write(fd, me.encode())
            os.close(fd)
            self.ports.append(port)
            return port
        raise BenchError("no free loopback port found")

    # -- processes ---------------------------------------------------------------------------
    def spawn(self, name, argv, log_path=None, as_server_user=False, cwd=None, env=None,
              stdout=None, stop_signal=signal.SIGTERM):
        """Starts argv in its own session (so a terminal's Ctrl-C reaches only us, and we stop
        it in order) and records its PID before any signal can interrupt us."""
        kw = {}
        if as_server_user and is_root():
            _, uid, gid = server_user()
            kw = dict(user=uid, group=gid, extra_groups=[])
        logf = open(log_path, "ab") if log_path else subprocess.DEVNULL
        # Not sigprocmask: a blocked mask would be inherited by the child across exec.
        _critical["depth"] += 1
        try:
            p = subprocess.Popen([str(a) for a in argv], cwd=str(cwd or self.path), env=env,
                                 stdin=subprocess.DEVNULL,
                                 stdout=stdout if stdout is not None else logf,
                                 stderr=logf, start_new_session=True, **kw)
            p.bench_name = name
            self.procs.append(p)
            with open(self.path / "pids", "a") as f:
                f.write("%d %s %d %s\n" % (p.pid, proc_starttime(p.pid), stop_signal, name))
        finally:
            _critical["depth"] -= 1
            if log_path:
                logf.close()
        if _critical["pending"] is not None and not _critical["depth"]:
            signum, _critical["pending"] = _critical["pending"], None
            raise Interrupted("signal %d" % signum)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=30.0):
        """Sends sig to p (by PID), waits up to timeout, then SIGKILLs it. Safe to repeat."""
        if p is None:
            return
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except OSError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                log("  %s (pid %d) did not stop within %.0fs: SIGKILL" % (
                    p.bench_name, p.pid, timeout))
                try:
                    p.kill()
                    p.wait(10)
                except (OSError, subprocess.TimeoutExpired):
                    pass
        kill_group_leftovers(p.pid)
        if p in self.procs:
            self.procs.remove(p)

    def close(self, stoppers=()):
        """Stops every process still running (the given stop callables first, newest first,
        then anything left by PID), keeps the logs in .bench/last-logs/, removes the run dir
        unless keep. Safe to call twice."""
        if self.closed:
            return
        ignore_signals()
        for stop in reversed(list(stoppers)):
            try:
                stop()
            except Exception as e:  # noqa: BLE001 - keep stopping the rest
                log("  cleanup: %s" % e)
        for p in reversed(list(self.procs)):
            self.stop(p, signal.SIGTERM, timeout=15)
        for port in self.ports:
            try:
                (PORT_CLAIM_DIR / str(port)).unlink()
            except OSError:
                pass
        logs = BENCH_DIR / ("last-logs" if self.path.name.startswith("run-") else
                            "last-logs-" + self.path.name.split("-")[0])
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(exist_ok=True)
        for f in self.path.rglob("*.log"):
            if f.is_file() and "pgbench_log" not in f.name:
                try:
                    shutil.copy(f, logs / f.relative_to(self.path).as_posix().replace("/", "_"))
                except OSError:
                    pass
        (self.path / "owner").unlink(missing_ok=True)  # nothing of ours runs any more
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)
        self.closed = True


def reap_stale_runs():
    """Stops processes left by earlier runs whose owner died (SIGKILL, power loss…), verified
    by PID and start time, and removes their directories."""
    for d in BENCH_DIR.glob("*-*-*"):
        owner = d / "owner"
        if not d.is_dir() or not owner.exists():
            continue
        try:
            opid, ostart = owner.read_text().split()
        except (OSError, ValueError):
            continue
        if pid_alive(int(opid)) and str(proc_starttime(int(opid))) == ostart:
            continue
        try:
            lines = (d / "pids").read_text().splitlines()
        except OSError:
            lines = []
        for line in reversed(lines):
            try:
                pid, start, sig, name = line.split(" ", 3)
                pid, sig = int(pid), int(sig)
            except ValueError:
                continue
            if pid_alive(pid):
                if str(proc_starttime(pid)) != start:
                    continue   # the PID was reused: not ours
                log("stopping %s (pid %d) left by an earlier run" % (name, pid))
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
                deadline = time.monotonic() + 15
                while pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if pid_alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            kill_group_leftovers(pid)
        (d / "owner").unlink()
        if not (d / "keep").exists():
            shutil.rmtree(d, ignore_errors=True)


def wait_until(cond, timeout, what, proc=None, log_path=None):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            if cond():
                return
        except Exception as e:  # noqa: BLE001
            last = e
        if proc is not None and proc.poll() is not None:
            raise BenchError("%s exited with status %s while starting%s" % (
                what, proc.returncode, tail_hint(log_path)))
        if time.monotonic() > deadline:
            raise BenchError("timed out waiting for %s%s%s" % (
                what, " (%s)" % last if last else "", tail_hint(log_path)))
        time.sleep(0.05)


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16384))
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
    except (OSError, TypeError):
        return ""


def tail_hint(path):
    t = tail(path)
    return "\n--- %s ---\n%s" % (path, t) if t else ""


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def psql(port, sql, db=DB, user="postgres", timeout=60, check=True):
    """Runs sql through psql against 127.0.0.1:port; returns stdout (unaligned, tuples only)."""
    p = subprocess.run([str(pg_bindir() / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                        "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, PGCONNECT_TIMEOUT="5", PGAPPNAME="bench"))
    if check and p.returncode != 0:
        raise BenchError("psql -p %d -c %r failed: %s" % (port, sql, p.stderr.strip()))
    return p.stdout.strip()


def first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


# --------------------------------------------------------------------------------------------
# Servers. Each has name, port, start(), stop(), alive(), version().
# --------------------------------------------------------------------------------------------

HUGEPAGES_SYSCTL = Path("/proc/sys/vm/nr_hugepages")
SHARED_BUFFERS_MB = 256


def meminfo(field):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


class HugePages:
    """2 MB huge pages for PostgreSQL's shared memory while a run lasts (root only).

    A new PostgreSQL backend maps shared_buffers page by page as it first touches them; with
    4 kB pages that costs a fresh backend most of its first seconds (measured on the 2-core VM:
    PgBouncer with freshly connected servers 0.75x its own throughput with pooled ones, and
    PostgreSQL direct ramping from 12k to 40k TPS over 15 s). pgbench connects anew for every
    run, so without huge pages a 5-second run measures backend warm-up, which PgBouncer's pooled
    server connections skip and every other target pays. Production servers with large
    shared_buffers run with huge pages for the same reason."""

    def __init__(self, pages):
        self.pages = pages
        self.added = 0
        self.why_not = None

    def reserve(self):
        if not is_root():
            self.why_not = "not root"
            return False
        if meminfo("Hugepagesize") != 2048:
            self.why_not = "no 2 MB huge pages"
            return False
        try:
            before = int(HUGEPAGES_SYSCTL.read_text())
            HUGEPAGES_SYSCTL.write_text(str(before + self.pages))
            now = int(HUGEPAGES_SYSCTL.read_text())
        except (OSError, ValueError) as e:
            self.why_not = "vm.nr_hugepages: %s" % e
            return False
        self.added = max(0, now - before)
        if (meminfo("HugePages_Free") or 0) - (meminfo("HugePages_Rsvd") or 0) < self.pages:
            self.release()
            self.why_not = "the kernel found only %d free huge pages" % self.added
            return False
        return True

    def release(self):
        """Gives back what reserve() added (safe to call twice)."""
        if not self.added:
            return
        try:
            now = int(HUGEPAGES_SYSCTL.read_text())
            HUGEPAGES_SYSCTL.write_text(str(max(0, now - self.added)))
        except (OSError, ValueError) as e:
            log("  cleanup: vm.nr_hugepages: %s" % e)
        self.added = 0

    def describe(self):
        if self.why_not:
            return "4 kB pages (huge pages not reserved: %s)" % self.why_not
        return "2 MB huge pages (%d reserved for the run)" % self.pages


class Postgres:
    name = "postgres"

    def __init__(self, run, max_connections=200, huge_pages=False):
        self.run = run
        self.port = run.free_port()
        self.dir = run.subdir("pg", owned_by_server_user=True)
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.max_connections = max_connections
        self.huge_pages = huge_pages
        self.proc = None
        self.superuser = server_user()[0]

    def _as_server_user(self):
        if not is_root():
            return {}
        _, uid, gid = server_user()
        return dict(user=uid, group=gid, extra_groups=[])

    def init(self):
        env = dict(os.environ, LC_ALL="C", LANG="C")
        p = subprocess.run([str(pg_bindir() / "initdb"), "-D", str(self.data), "-U",
                            self.superuser, "--auth=trust", "--encoding=UTF8", "--locale=C",
                            "--no-sync"], cwd=str(self.dir), env=env, capture_output=True,
                           text=True, timeout=300, **self._as_server_user())
        if p.returncode != 0:
            raise BenchError("initdb failed:\n%s%s" % (p.stdout, p.stderr))
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": self.port,
            "unix_socket_directories": "'%s'" % self.dir,
            "max_connections": self.max_connections,
            "shared_buffers": "%dMB" % SHARED_BUFFERS_MB,
            "huge_pages": "on" if self.huge_pages else "off",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_wal_size": "2GB",
            "checkpoint_timeout": "30min",
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            "lc_messages": "'C'",
        }
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# pgstash bench\n")
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, v))
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n")

    def start(self):
        if not self.data.exists():
            self.init()
        self.proc = self.run.spawn("postgres", [pg_bindir() / "postgres", "-D", self.data],
                                   log_path=self.log_path, as_server_user=True, cwd=self.dir,
                                   stop_signal=signal.SIGINT)
        wait_until(lambda: psql(self.port, "SELECT 1", db="postgres") == "1", 60,
                   "PostgreSQL on port %d" % self.port, self.proc, self.log_path)

    def stop(self):
        self.run.stop(self.proc, signal.SIGINT, timeout=60)  # fast shutdown

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def version(self):
        return first_line([str(pg_bindir() / "postgres"), "--version"])


class Redis:
    name = "redis"

    def __init__(self, run):
        self.run = run
        self.port = run.free_port()
        self.dir = run.subdir("redis")
        self.log_path = self.dir / "redis.log"
        self.proc = None

    def start(self):
        self.proc = self.run.spawn("redis-server", [
            need("redis-server"), "--port", self.port, "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no",
            "--maxmemory", "512mb", "--maxmemory-policy", "allkeys-lru", "--dir", self.dir,
            "--logfile", self.log_path], cwd=self.dir)
        wait_until(lambda: self.command("PING") == "+PONG", 20,
                   "Redis on port %d" % self.port, self.proc, self.log_path)

    def command(self, *args):
        """One inline command; returns the first reply line (enough for PING/INFO checks)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            payload = "*%d\r\n" % len(args) + "".join(
                "$%d\r\n%s\r\n" % (len(str(a).encode()), a) for a in args)
            s.sendall(payload.encode())
            return s.recv(65536).decode("utf-8", "replace").split("\r\n")[0]

    def stop(self):
        self.run.stop(self.proc, signal.SIGTERM, timeout=20)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def version(self):
        return first_line([need("redis-server"), "--version"])


class Direct:
    """PostgreSQL itself as a benchmark target."""
    kind = "direct"

    def __init__(self, pg):
        self.pg = pg
        self.name = "direct"
        self.port = pg.port
        self.log_path = pg.log_path

    def start(self):
        pass

    def stop(self):
        pass

    def alive(self):
        return self.pg.alive()

    def restart(self):
        pass

    def version(self):
        return self.pg.version()


class PgBouncer:
    kind = "pgbouncer"

    def __init__(self, run, pg, pool_size=20, name="pgbouncer", wrapper=()):
        self.run, self.pg = run, pg
        self.name = name
        self.wrapper = list(wrapper)   # e.g. valgrind (tests/bench/callgrind.sh --relay)
        self.port = run.free_port()
        self.dir = run.subdir(name, owned_by_server_user=True)
        self.log_path = self.dir / "pgbouncer.log"
        self.pool_size = pool_size
        self.proc = None

    def start(self):
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            "* = host=127.0.0.1 port=%d\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            "listen_port = %d\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            "auth_file = %s\n"
            "admin_users = %s\n"
            "pool_mode = session\n"
            "max_client_conn = 200\n"
            "default_pool_size = %d\n"
            "ignore_startup_parameters = extra_float_digits\n"
            "log_connections = 0\n"
            "log_disconnections = 0\n"
            "pidfile = %s\n" % (self.pg.port, self.port, self.dir / "userlist.txt",
                                self.pg.superuser, self.pool_size, self.dir / "pgbouncer.pid"))
        (self.dir / "userlist.txt").write_text('"%s" ""\n' % self.pg.superuser)
        self.proc = self.run.spawn(self.name, self.wrapper + [need("pgbouncer"), ini],
                                   log_path=self.log_path, as_server_user=True, cwd=self.dir,
                                   stop_signal=signal.SIGINT)
        wait_until(lambda: psql(self.port, "SELECT 1") == "1", 30,
                   "PgBouncer on port %d" % self.port, self.proc, self.log_path)

    def stop(self):
        self.run.stop(self.proc, signal.SIGINT, timeout=20)  # SIGINT = safe shutdown

    def restart(self):
        self.stop()
        self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def version(self):
        return first_line([need("pgbouncer"), "--version"])


class Pgpool:
    """Pgpool-II in raw mode over the single backend: no load balancing, no replication, its
    connection cache and its shared-memory query cache on."""
    kind = "pgpool"

    def __init__(self, run, pg, children=12):
        self.run, self.pg = run, pg
        self.name = "pgpool"
        self.port = run.free_port()
        self.pcp_port = run.free_port()
        self.dir = run.subdir("pgpool", owned_by_server_user=True)
        self.log_path = self.dir / "pgpool.log"
        self.children = children
        self.proc = None

    def config(self):
        d = self.dir
        return {
            "backend_clustering_mode": "'raw'",
            "listen_addresses": "'127.0.0.1'",
            "port": self.port,
            "socket_dir": "'%s'" % d,
            "pcp_listen_addresses": "''",
            "pcp_port": self.pcp_port,
            "pcp_socket_dir": "'%s'" % d,
            "backend_hostname0": "'127.0.0.1'",
            "backend_port0": self.pg.port,
            "backend_weight0": 1,
            "backend_data_directory0": "'%s'" % self.pg.data,
            "backend_flag0": "'DISALLOW_TO_FAILOVER'",
            "enable_pool_hba": "off",
            "pool_passwd": "''",
            "num_init_children": self.children,   # 8 bench clients + psql probes
            "max_pool": 1,
            "reserved_connections": 0,
            "child_life_time": 0,
            "child_max_connections": 0,
            "connection_life_time": 0,
            "client_idle_limit": 0,
            "connection_cache": "on",
            "load_balance_mode": "off",
            "health_check_period": 0,
            "sr_check_period": 0,
            "failover_on_backend_error": "off",
            "use_watchdog": "off",
            "pid_file_name": "'%s'" % (d / "pgpool.pid"),
            "logdir": "'%s'" % d,
            "wd_ipc_socket_dir": "'%s'" % d,
            "log_destination": "'stderr'",
            "log_min_messages": "warning",
            "memory_cache_enabled": "on",
            "memqcache_method": "'shmem'",
            "memqcache_total_size": "256MB",
            "memqcache_max_num_cache": 1000000,
            "memqcache_expire": 0,
            "memqcache_auto_cache_invalidation": "on",
            "memqcache_maxcache": "400kB",
            "memqcache_cache_block_size": "1MB",
            "memqcache_oiddir": "'%s'" % (d / "oiddir"),
        }

    def start(self):
        conf = self.dir / "pgpool.conf"
        conf.write_text("# pgstash bench: Pgpool-II with its query cache\n" + "".join(
            "%s = %s\n" % kv for kv in self.config().items()))
        (self.dir / "pcp.conf").write_text("")
        (self.dir / "pool_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
        oid = self.dir / "oiddir"
        shutil.rmtree(oid, ignore_errors=True)
        oid.mkdir()
        if is_root():
            _, uid, gid = server_user()
            for f in (conf, self.dir / "pcp.conf", self.dir / "pool_hba.conf", oid):
                os.chown(f, uid, gid)
        self.proc = self.run.spawn("pgpool", [
            need("pgpool"), "-n", "-D", "-f", conf, "-F", self.dir / "pcp.conf",
            "-a", self.dir / "pool_hba.conf"], log_path=self.log_path, as_server_user=True,
            cwd=self.dir, stop_signal=signal.SIGINT)
        wait_until(lambda: psql(self.port, "SELECT 1") == "1", 60,
                   "Pgpool-II on port %d" % self.port, self.proc, self.log_path)

    def stop(self):
        self.run.stop(self.proc, signal.SIGINT, timeout=30)  # SIGINT = fast shutdown

    def restart(self):
        self.stop()
        self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cache_counters(self):
        """(hits, selects not from cache) from SHOW POOL_CACHE, or None."""
        try:
            out = psql(self.port, "SHOW pool_cache", timeout=15).split("|")
            return int(out[0]), int(out[1])
        except (BenchError, ValueError, IndexError, subprocess.TimeoutExpired):
            return None

    def version(self):
        return first_line([need("pgpool"), "--version"])


class Pgstash:
    kind = "pgstash"

    def __init__(self, run, pg, redis, workers=1, consistency="strict", binary=None,
                 wrapper=(), name=None, log_level="info", ttl="1h", keep_servers=False):
        self.run, self.pg, self.redis = run, pg, redis
        self.workers, self.consistency = workers, consistency
        self.name = name or ("pgstash-w%s%s" % (workers, "" if consistency == "strict"
                                                 else "-" + consistency))
        self.binary = Path(binary or os.environ.get("PGSTASH_BIN") or REPO / "pgstash")
        self.wrapper = list(wrapper)
        self.port = run.free_port()
        self.admin_port = run.free_port()
        self.dir = run.subdir(self.name)
        self.log_path = self.dir / "pgstash.log"
        self.conf_path = self.dir / "pgstash.yaml"
        self.log_level, self.ttl = log_level, ttl
        self.keep_servers = keep_servers   # limits.server_idle_timeout: kept server connections
        self.proc = None
        self.crashes = 0

    def start(self, timeout=30):
        if not self.binary.exists():
            raise BenchError("pgstash binary %s not found (run `make`)" % self.binary)
        self.conf_path.write_text(
            "listen: 127.0.0.1:%d\n"
            "upstream: 127.0.0.1:%d\n"
            "redis: %s\n"
            "workers: %s\n"
            "catalog:\n"
            "  user: %s\n"
            "cache:\n"
            "  enabled: %s\n"
            "  default_ttl: %s\n"
            "  consistency: %s\n"
            "  key_prefix: bench-%s\n"   # one namespace per instance: no shared entries
            "log:\n"
            "  level: %s\n"
            "  stats_interval: 0\n"
            "limits:\n"
            "  server_idle_timeout: %s\n"
            "admin:\n"
            "  listen: 127.0.0.1:%d\n" % (
                self.port, self.pg.port, self.redis.url(), self.workers, self.pg.superuser,
                "false" if self.consistency == "off" else "true", self.ttl,
                "strict" if self.consistency == "off" else self.consistency, self.name,
                self.log_level, "60s" if self.keep_servers else "0", self.admin_port))
        self.proc = self.run.spawn(self.name, self.wrapper + [self.binary, "-c", self.conf_path],
                                   log_path=self.log_path, cwd=self.dir)
        wait_until(lambda: port_accepts(self.port), timeout,
                   "%s on port %d" % (self.name, self.port), self.proc, self.log_path)
        wait_until(lambda: psql(self.port, "SELECT 1") == "1", timeout,
                   "%s to relay a query" % self.name, self.proc, self.log_path)

    def stop(self):
        self.run.stop(self.proc, signal.SIGTERM, timeout=40)

    def restart(self):
        self.stop()
        self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stats(self, timeout=5):
        """The /stats JSON, or None if it cannot be read."""
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/stats" % self.admin_port,
                                        timeout=timeout) as r:
                return json.loads(r.read().decode())
        except Exception:  # noqa: BLE001 - a dead or hung admin port is reported as "?"
            return None

    def rss_kb(self):
        if not self.alive():
            return None, None
        return proc_status(self.proc.pid, "VmRSS"), proc_status(self.proc.pid, "VmHWM")

    def version(self):
        return first_line([str(self.binary), "--version"])


# --------------------------------------------------------------------------------------------
# pgbench
# --------------------------------------------------------------------------------------------

class PgbenchResult:
    def __init__(self):
        self.ok = False
        self.error = None        # short reason when not ok
        self.reason = None       # the same without client numbers, for grouping
        self.tps = None
        self.txns = 0
        self.failed = 0          # pgbench's "number of failed transactions"
        self.aborted = 0         # clients that aborted on an error
        self.avg_ms = None
        self.p99_ms = None
        self.proxy_us = None     # the proxy's CPU microseconds per transaction (bench.py)
        self.returncode = None
        self.stderr = ""


_RE_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)
_RE_TXNS = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_RE_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
_RE_ABORT = re.compile(r"client (\d+) aborted")


def pgbench(run, port, script_args, mode, duration=None, transactions=None, clients=8,
            threads=2, logdir=None, extra=(), timeout=None, defines=()):
    """Runs pgbench against 127.0.0.1:port; returns a PgbenchResult. With logdir, writes
    per-transaction logs there and computes average and p99 latency from them. A run that
    outlives timeout is killed and reported as an error, never waited for forever."""
    argv = [pg_bindir() / "pgbench", "-h", "127.0.0.1", "-p", port, "-U", server_user()[0],
            "-n", "-c", clients, "-j", threads, "-M", mode]
    if duration is not None:
        argv += ["-T", duration]
    if transactions is not None:
        argv += ["-t", transactions]
    for d in defines:
        argv += ["-D", d]
    argv += list(script_args) + list(extra)
    if logdir:
        shutil.rmtree(logdir, ignore_errors=True)
        logdir.mkdir(parents=True)
        argv += ["--log", "--log-prefix", logdir / "pgbench_log"]
    argv.append(DB)
    if timeout is None:
        timeout = (duration or 60) + max(30, duration or 0)
    out_path = run.path / "pgbench.out"
    err_path = run.path / "pgbench.err"
    for f in (out_path, err_path):
        f.unlink(missing_ok=True)
    with open(out_path, "wb") as out:
        p = run.spawn("pgbench", argv, log_path=err_path, stdout=out, stop_signal=signal.SIGINT,
                      cwd=logdir or run.path, env=dict(os.environ, PGAPPNAME="pgbench"))
        res = PgbenchResult()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            res.error = "timeout: pgbench still running after %ds" % timeout
        finally:
            run.stop(p, signal.SIGINT, timeout=5)
    res.returncode = p.returncode
    stdout = out_path.read_text(errors="replace")
    res.stderr = err_path.read_text(errors="replace")
    m = _RE_TPS.search(stdout)
    res.tps = float(m.group(1)) if m else None
    m = _RE_TXNS.search(stdout)
    res.txns = int(m.group(1)) if m else 0
    m = _RE_FAILED.search(stdout)
    res.failed = int(m.group(1)) if m else 0
    res.aborted = len(set(_RE_ABORT.findall(res.stderr)))
    if res.error is None:
        if res.aborted:
            res.error = "%d of %d clients aborted: %s" % (res.aborted, clients,
                                                          first_error(res.stderr))
        elif p.returncode != 0:
            res.error = "pgbench exit %d: %s" % (p.returncode, first_error(res.stderr))
        elif res.tps is None:
            res.error = "no tps in pgbench output"
        elif res.txns == 0:
            res.error = "no transaction completed"
    if logdir:
        lat = read_latencies(logdir)
        if lat:
            res.avg_ms = statistics.fmean(lat) / 1000.0
            res.p99_ms = percentile(lat, 99) / 1000.0
        shutil.rmtree(logdir, ignore_errors=True)
    res.ok = res.error is None
    if res.aborted:
        res.reason = re.sub(r"client \d+", "client N", first_error(res.stderr))
    else:
        res.reason = res.error
    return res


def first_error(stderr):
    for line in stderr.splitlines():
        if "error" in line.lower() or "aborted" in line:
            line = re.sub(r"^pgbench: (error: )?", "", line.strip())
            return line[:240]
    lines = [l for l in stderr.splitlines() if l.strip()]
    return lines[-1][:240] if lines else "(no message)"


def read_latencies(logdir):
    """Latencies in µs of the transactions that completed, from pgbench's --log files
    (`client txno latency_us script epoch us …`; failed ones say `failed`)."""
    lat = []
    for path in glob.glob(str(logdir / "pgbench_log.*")):
        with open(path) as f:
            for line in f:
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[2].isdigit():
                    lat.append(int(parts[2]))
    return lat


def percentile(values, pct):
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-pct * len(s) // 100)) - 1))
    return s[k]


# --------------------------------------------------------------------------------------------
# Machine
# --------------------------------------------------------------------------------------------

def machine_info():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = "%.1f GiB" % (int(line.split()[1]) / 1048576)
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "ram": mem,
        "kernel": platform.release(),
        "os": first_line(["sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\""]),
        "loadavg": " ".join(open("/proc/loadavg").read().split()[:3]),
    }


def git_revision():
    """Short HEAD and +dirty, without taking any lock in the shared repository."""
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, env=env, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               env=env, timeout=20).stdout.strip()
        return rev + ("+dirty" if dirty else "") if rev else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"
