"""
docker/ checked by reading (no Docker engine runs on the build machines):

- docker-compose.yml parses as YAML and names postgres (postgres:15, pg_isready), redis
  (redis:7, allkeys-lru, redis-cli ping) and pgstash (built from the repository with
  docker/Dockerfile, depends on both being healthy, /healthz health check with a tool the
  image has, ports 6432 and 9187, the catalog password from the environment);
- the Dockerfile has a Debian 12 build stage installing scripts/install-deps.sh's build group
  and running make, and a bookworm-slim runtime stage with a non-root USER, exactly the
  runtime libraries the binary links against (each one a real Debian 12 package, checked with
  apt-cache), the binary, the config at /etc/pgstash/pgstash.yaml, EXPOSE 6432 9187 and an
  ENTRYPOINT running pgstash -c that file;
- docker/pgstash.docker.yaml is a valid pgstash configuration for the compose services.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pgstash_harness import pgstash_binary

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
DOCKERFILE = DOCKER / "Dockerfile"
CONFIG = DOCKER / "pgstash.docker.yaml"
CONFIG_IN_IMAGE = "/etc/pgstash/pgstash.yaml"

# What ./pgstash links against, as Debian 12 runtime packages.
RUNTIME_LIBS = ("libev4", "libhiredis0.14", "libjansson4", "libyaml-0-2", "libpq5", "libssl3",
                "libpg-query1504.0")
BASE_IMAGE_PACKAGES = {"libc6"}   # in every Debian image


# --- parsing -----------------------------------------------------------------------------------

def dockerfile_instructions(text):
    """[(INSTRUCTION, arguments)] with continuation lines joined and comments dropped."""
    out = []
    cur = ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    assert not cur, "Dockerfile ends inside a continuation line"
    return out


def stages(instructions):
    """[{"from": image, "name": alias or None, "instructions": [...]}]."""
    result = []
    for ins, args in instructions:
        if ins == "FROM":
            parts = args.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            result.append({"from": parts[0], "name": name, "instructions": []})
        else:
            assert result or ins == "ARG", "%s before the first FROM" % ins
            if result:
                result[-1]["instructions"].append((ins, args))
    return result


def apt_installed(stage):
    """Package names given to apt-get install in a stage's RUN instructions."""
    pkgs = []
    for ins, args in stage["instructions"]:
        if ins != "RUN":
            continue
        for cmd in re.split(r"&&|;|\|\|", args):
            words = shlex.split(cmd)
            words = [w for w in words if "=" not in w or w.startswith("-")]   # env assignments
            if "apt-get" in words and "install" in words:
                after = words[words.index("install") + 1:]
                pkgs += [w for w in after if not w.startswith("-")]
    return pkgs


def install_deps_group(name):
    text = (ROOT / "scripts" / "install-deps.sh").read_text()
    m = re.search(r"^%s_pkgs=\(([^)]*)\)" % name, text, re.M)
    assert m, "no %s_pkgs=(...) in scripts/install-deps.sh" % name
    return [w for w in m.group(1).split() if not w.startswith("$")]


def exec_form(args):
    """The JSON array of an exec-form ENTRYPOINT/CMD, or None for the shell form."""
    try:
        v = json.loads(args)
    except ValueError:
        return None
    return v if isinstance(v, list) else None


@pytest.fixture(scope="module")
def compose():
    with open(COMPOSE) as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), doc
    return doc


@pytest.fixture(scope="module")
def dockerfile():
    return stages(dockerfile_instructions(DOCKERFILE.read_text()))


@pytest.fixture(scope="module")
def docker_config():
    with open(CONFIG) as f:
        return yaml.safe_load(f)


def apt_cache_known(pkgs):
    """The subset of pkgs that `apt-cache show` knows (one call for all of them)."""
    p = subprocess.run(["apt-cache", "show", "--no-all-versions"] + sorted(set(pkgs)),
                       capture_output=True, text=True, timeout=120)
    return set(re.findall(r"^Package: (\S+)$", p.stdout, re.M)) & set(pkgs)


def debian_12():
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return False
    return 'VERSION_ID="12"' in text and "ID=debian" in text


def healthcheck_command(hc):
    test = hc.get("test")
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL"), test
        return " ".join(test[1:])
    return test


# --- docker-compose.yml --------------------------------------------------------------------------

def test_compose_names_the_three_services(compose):
    assert set(compose["services"]) >= {"postgres", "redis", "pgstash"}, compose["services"]
    assert "version" not in compose, "the top-level version key is obsolete in Compose v2"


def test_compose_postgres(compose):
    pgs = compose["services"]["postgres"]
    assert str(pgs["image"]).split(":")[0] in ("postgres", "docker.io/library/postgres")
    assert str(pgs["image"]).split(":")[1].startswith("15"), pgs["image"]
    assert "pg_isready" in healthcheck_command(pgs["healthcheck"])
    env = pgs.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    assert "POSTGRES_PASSWORD" in env or "POSTGRES_HOST_AUTH_METHOD" in env, \
        "the postgres image refuses to start without POSTGRES_PASSWORD"


def test_compose_redis(compose):
    r = compose["services"]["redis"]
    assert str(r["image"]).split(":")[0] in ("redis", "docker.io/library/redis")
    assert str(r["image"]).split(":")[1].startswith("7"), r["image"]
    cmd = r.get("command")
    words = cmd if isinstance(cmd, list) else shlex.split(cmd or "")
    words = [str(w) for w in words]
    assert "--maxmemory-policy" in words and \
        words[words.index("--maxmemory-policy") + 1] == "allkeys-lru", words
    assert "--maxmemory" in words and words[words.index("--maxmemory") + 1] == "256mb", words
    hc = healthcheck_command(r["healthcheck"])
    assert "redis-cli" in hc and "ping" in hc, hc


def test_compose_pgstash(compose, dockerfile, docker_config):
    p = compose["services"]["pgstash"]
    # Built from the repository root with docker/Dockerfile.
    build = p["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == ROOT, context
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE
    # Starts once both dependencies are healthy.
    deps = p["depends_on"]
    assert isinstance(deps, dict), "depends_on needs the long form to carry conditions"
    for svc in ("postgres", "redis"):
        assert deps[svc]["condition"] == "service_healthy", deps
        assert "healthcheck" in compose["services"][svc], svc
    # Health check on /healthz of admin.listen, with a tool the runtime image installs.
    hc = healthcheck_command(p["healthcheck"])
    admin_port = int(str(docker_config["admin"]["listen"]).rsplit(":", 1)[1])
    m = re.search(r"https?://(127\.0\.0\.1|localhost):(\d+)/healthz", hc)
    assert m and int(m.group(2)) == admin_port, hc
    tool = hc.split()[0]
    runtime = dockerfile[-1]
    assert tool in apt_installed(runtime), "%s is not installed in the runtime image" % tool
    assert "-f" in hc.split() or "--fail" in hc or re.search(r"\s-\w*f", hc), \
        "the health check must fail on HTTP 503: %s" % hc
    # Ports 6432 (listen) and 9187 (admin.listen) published.
    listen_port = int(str(docker_config["listen"]).rsplit(":", 1)[1])
    container_ports = set()
    for spec in p["ports"]:
        spec = str(spec["target"]) if isinstance(spec, dict) else str(spec)
        container_ports.add(int(spec.split(":")[-1].split("/")[0]))
    assert {listen_port, admin_port} <= container_ports == {6432, 9187}, p["ports"]
    # The catalog password arrives in the variable the config names.
    env = p.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    assert docker_config["catalog"]["password_env"] in env, env
    # docker stop waits longer than pgstash's own shutdown grace.
    grace = str(docker_config.get("limits", {}).get("shutdown_grace", "30s"))
    grace_s = int(re.fullmatch(r"(\d+)s", grace).group(1))
    stop = str(p.get("stop_grace_period", "10s"))
    stop_s = int(re.fullmatch(r"(\d+)s", stop).group(1))
    assert stop_s > grace_s, "stop_grace_period %s <= limits.shutdown_grace %s" % (stop, grace)


# --- Dockerfile ----------------------------------------------------------------------------------

def test_dockerfile_two_stages(dockerfile):
    assert len(dockerfile) == 2, [s["from"] for s in dockerfile]
    build, runtime = dockerfile
    assert build["from"] in ("debian:bookworm", "debian:12"), build["from"]
    assert build["name"], "the build stage needs a name for COPY --from"
    assert runtime["from"] in ("debian:bookworm-slim", "debian:12-slim"), runtime["from"]
    runs = " ".join(a for i, a in build["instructions"] if i == "RUN")
    assert re.search(r"\bmake\b", runs), "the build stage never runs make"


def test_dockerfile_build_stage_installs_the_build_group(dockerfile):
    installed = set(apt_installed(dockerfile[0]))
    missing = [p for p in install_deps_group("build") if p not in installed]
    assert not missing, "build stage lacks scripts/install-deps.sh build packages: %s" % missing


def test_dockerfile_runtime_stage(dockerfile):
    build, runtime = dockerfile
    ins = runtime["instructions"]
    installed = apt_installed(runtime)
    for lib in RUNTIME_LIBS:
        assert lib in installed, "runtime stage does not install %s" % lib
    dev = [p for p in installed if p.endswith("-dev") or p in ("gcc", "make", "pkg-config")]
    assert not dev, "build tools in the runtime image: %s" % dev
    # A non-root user, set after everything that needs root.
    users = [a for i, a in ins if i == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users
    last_run = max(k for k, (i, _) in enumerate(ins) if i == "RUN")
    last_user = max(k for k, (i, _) in enumerate(ins) if i == "USER")
    assert last_user > last_run
    if not user.isdigit():
        runs = " ".join(a for i, a in ins if i == "RUN")
        assert re.search(r"(useradd|adduser)\b[^&;]*\b%s\b" % re.escape(user), runs), \
            "USER %s is never created" % user
    # The binary from the build stage and the config at /etc/pgstash/pgstash.yaml.
    copies = [a for i, a in ins if i == "COPY"]
    assert any(re.match(r"--from=%s\s+\S*pgstash\s+\S+" % re.escape(build["name"]), c)
               for c in copies), copies
    cfg_copy = [c for c in copies if c.split()[-1] == CONFIG_IN_IMAGE]
    assert cfg_copy, "nothing copied to %s" % CONFIG_IN_IMAGE
    assert (ROOT / cfg_copy[0].split()[-2]).resolve() == CONFIG, cfg_copy
    # Ports and entrypoint.
    exposed = {int(p.split("/")[0]) for i, a in ins if i == "EXPOSE" for p in a.split()}
    assert exposed == {6432, 9187}, exposed
    entry = [a for i, a in ins if i == "ENTRYPOINT"]
    assert entry, "no ENTRYPOINT"
    argv = exec_form(entry[-1])
    assert argv, "ENTRYPOINT in shell form: SIGTERM would reach /bin/sh, not pgstash"
    assert Path(argv[0]).name == "pgstash" and argv[1:3] == ["-c", CONFIG_IN_IMAGE], argv
    # The image's own HEALTHCHECK, if any, uses a tool the image has.
    for i, a in ins:
        if i == "HEALTHCHECK" and a.upper() != "NONE":
            cmd = re.sub(r"^(--\S+\s+)*CMD\s+", "", a)
            assert cmd.split()[0] in installed, a


@pytest.mark.skipif(not shutil.which("apt-cache") or not debian_12(),
                    reason="needs Debian 12's apt-cache")
def test_dockerfile_packages_exist_in_debian_12(dockerfile):
    pkgs = [pkg for stage in dockerfile for pkg in apt_installed(stage)]
    unknown = sorted(set(pkgs) - apt_cache_known(pkgs))
    assert not unknown, "apt-cache show: no such Debian 12 package: %s" % unknown


@pytest.mark.skipif(not pgstash_binary().exists() or not shutil.which("readelf")
                    or not shutil.which("dpkg"), reason="needs the binary, readelf and dpkg")
def test_runtime_stage_covers_every_linked_library(dockerfile):
    """Each DT_NEEDED library of ./pgstash comes from a package the runtime stage installs (or
    from libc6, which every Debian image has)."""
    binary = str(pgstash_binary())
    dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True,
                         check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
    assert needed, dyn
    if any("asan" in n or "ubsan" in n for n in needed):
        pytest.skip("sanitizer build")
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    installed = set(apt_installed(dockerfile[-1])) | BASE_IMAGE_PACKAGES
    for lib in needed:
        path = paths.get(lib)
        assert path, "ldd cannot resolve %s" % lib
        owners = None
        for cand in {path, os.path.realpath(path), path.replace("/usr/lib/", "/lib/", 1),
                     path.replace("/lib/", "/usr/lib/", 1)}:
            p = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True)
            if p.returncode == 0:
                owners = {ln.split(":")[0] for ln in p.stdout.splitlines()}
                break
        assert owners, "no Debian package owns %s (%s)" % (lib, path)
        assert owners & installed, "%s (from %s) is not installed in the runtime stage" % (
            lib, ", ".join(sorted(owners)))


# --- pgstash.docker.yaml ------------------------------------------------------------------------

def test_docker_config(docker_config, compose):
    c = docker_config
    assert c["listen"] == "0.0.0.0:6432", c["listen"]
    assert c["upstream"] == "postgres:5432", c["upstream"]
    assert c["redis"] == "redis://redis:6379/0", c["redis"]
    assert c["admin"]["listen"] == "0.0.0.0:9187", c["admin"]
    assert c["catalog"]["user"] == "postgres" and c["catalog"]["password_env"], c["catalog"]
    # The hosts it names are compose services.
    for host in ("postgres", "redis"):
        assert host in compose["services"]


@pytest.mark.skipif(not pgstash_binary().exists(), reason="needs ./pgstash")
def test_docker_config_passes_check_config():
    p = subprocess.run([str(pgstash_binary()), "--check-config", "-c", str(CONFIG)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
