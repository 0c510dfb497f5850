#!/usr/bin/env bash
# Installs the Debian packages pgstash needs, only those missing, through apt-get
# (as root, or through sudo). Called by `make`, `make run` and `make test`, so a fresh
# Debian 12 machine needs nothing else.
#
#   scripts/install-deps.sh [build|test|bench|fuzz|clients]...   (default: build)
set -euo pipefail

build_pkgs=(gcc make pkg-config libev-dev libhiredis-dev libjansson-dev check libsubunit-dev
    libpg-query-dev libprotobuf-c-dev libyaml-dev libssl-dev libpq-dev)
run_pkgs=(postgresql-15 postgresql-client-15 redis-server)
test_pkgs=("${run_pkgs[@]}" python3 python3-psycopg2 python3-psycopg python3-pytest python3-yaml curl procps iproute2)
bench_pkgs=("${run_pkgs[@]}" pgbouncer pgpool2 procps)
# make fuzz / the fuzz stage: clang 14 with its libFuzzer and sanitizer runtimes (Debian 12
# ships those in libclang-rt-14-dev, which clang does not pull in), and llvm-symbolizer.
fuzz_pkgs=(clang libclang-rt-14-dev llvm-14)
# tests/clients: the real drivers (psycopg2, psycopg 3, node-postgres from npm, pgjdbc, psql).
clients_pkgs=(python3 python3-psycopg2 python3-psycopg python3-pytest postgresql-client-15 curl
    default-jdk-headless libpostgresql-jdbc-java)
# nodejs and npm only when missing as commands: a NodeSource nodejs bundles npm and conflicts
# with Debian's npm package, which apt-get would otherwise try to install over it.
command -v node >/dev/null 2>&1 || clients_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || clients_pkgs+=(npm)

want=()
[ $# -eq 0 ] && set -- build
for group in "$@"; do
    case "$group" in
    build) want+=("${build_pkgs[@]}") ;;
    run) want+=("${build_pkgs[@]}" "${run_pkgs[@]}") ;;
    test) want+=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
    bench) want+=("${build_pkgs[@]}" "${bench_pkgs[@]}") ;;
    fuzz) want+=("${build_pkgs[@]}" "${fuzz_pkgs[@]}") ;;
    clients) want+=("${clients_pkgs[@]}") ;;
    *) echo "install-deps: unknown group '$group'" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

# Deduplicate while keeping order.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')
echo "install-deps: installing ${missing[*]}" >&2

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "install-deps: missing packages (${missing[*]}) and neither root nor sudo" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Debian's postgresql and redis packages start system-wide servers on install; pgstash
# never uses them, so keep them from starting (policy-rc.d 101 = "action not allowed").
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod +x "$policy"
    created_policy=1
fi
# An if, not `[ ] && rm`: a false test as the trap's last command would become the exit status.
cleanup() { if [ "$created_policy" -eq 1 ]; then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

# Try with the package lists we have; refresh them only when that fails.
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
