#!/usr/bin/env bash
# tests/run-all.sh — every test stage, in order, with a summary; what `make test` runs after
# building. Exits non-zero if any stage fails. Each stage's output is also kept in
# build/test-logs/<stage>.log.
#
#   tests/run-all.sh                     the default stages (see DEFAULT_STAGES below)
#   tests/run-all.sh integration         only the named stages
#   PGSTASH_TEST_STAGES="unit" make test same, through make
#   PYTEST_ARGS="-k cancel -x" tests/run-all.sh integration
#   PGSTASH_TEST_DIRECT=1 tests/run-all.sh integration   run the suite against PostgreSQL itself
#   make SANITIZE=address,undefined test the same stages on the sanitizer build (build/san)
#
# Adding a stage: write a stage_<name> function below (return non-zero on failure) and add
# <name> to DEFAULT_STAGES, or to auto_stages if it should run only when its files exist.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PY=/usr/bin/python3   # Debian's python3, which has psycopg2/psycopg/pytest (not a pyenv one)

if [ -n "${SANITIZE:-}" ]; then
    VARIANT=san
    DEFAULT_BIN=$ROOT/build/san/pgstash
    # Leaks are reported at exit; halt on the first error so a stage fails loudly.
    # A small quarantine: the default (256 MB of freed memory kept poisoned) makes RSS-bounded
    # tests meaningless; 8 MB still catches use-after-free of recent frees.
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1:quarantine_size_mb=8}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
else
    VARIANT=release
    DEFAULT_BIN=$ROOT/pgstash
fi
BUILD_DIR=${BUILD_DIR:-$ROOT/build/$VARIANT}
export PGSTASH_BIN=${PGSTASH_BIN:-$DEFAULT_BIN}
LOG_DIR=$ROOT/build/test-logs
mkdir -p "$LOG_DIR"

# Per-stage wall-clock limits (seconds). A passing run takes a few minutes; even a badly broken
# build ends well within 30 (the integration suite also has its own budget, see conftest.py).
UNIT_TIMEOUT=${UNIT_TIMEOUT:-120}   # per binary
INTEGRATION_TIMEOUT=${INTEGRATION_TIMEOUT:-1500}   # pytest stops itself at its 18 min budget
CLIENTS_TIMEOUT=${CLIENTS_TIMEOUT:-600}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-300}

DEFAULT_STAGES=(unit integration sanitizer)

# Stages that join the default run as soon as their suite exists in the tree.
auto_stages() {
    if compgen -G "tests/clients/test_*.py" >/dev/null || [ -x tests/clients/run.sh ]; then
        echo clients
    fi
    if [ -x tests/fuzz/run-corpus.sh ]; then
        echo fuzz
    fi
}

# --- stages ------------------------------------------------------------------------------

# Unit tests: every check binary the Makefile built from tests/unit/test_*.c.
stage_unit() {
    local bins=() t failed=0
    if [ -d "$BUILD_DIR/tests" ]; then
        while IFS= read -r t; do bins+=("$t"); done < <(
            find "$BUILD_DIR/tests" -maxdepth 1 -type f -name 'test_*' -perm -u+x | sort)
    fi
    if [ ${#bins[@]} -eq 0 ]; then
        if compgen -G "tests/unit/test_*.c" >/dev/null; then
            echo "no unit test binaries in $BUILD_DIR/tests, but tests/unit has sources:" \
                 "build them with 'make unit-bins'"
            return 1
        fi
        echo "no unit tests yet"
        return 0
    fi
    for t in "${bins[@]}"; do
        echo "== $t"
        if ! CK_FORK=yes timeout --kill-after=10 "$UNIT_TIMEOUT" "$t"; then
            echo "!! FAILED: $t"
            failed=1
        fi
    done
    return $failed
}

# Integration tests: real PostgreSQL + Redis + pgstash, through libpq (pytest).
stage_integration() {
    if [ "${PGSTASH_TEST_DIRECT:-}" != 1 ] && [ ! -x "$PGSTASH_BIN" ]; then
        echo "pgstash binary not found at $PGSTASH_BIN (run make, or set PGSTASH_BIN)"
        return 1
    fi
    eval "set -- ${PYTEST_ARGS:-}"   # shell words, so -k 'a or b' works
    timeout --signal=TERM --kill-after=30 "$INTEGRATION_TIMEOUT" \
        "$PY" -m pytest -q -p no:cacheprovider -rfEs tests/integration "$@"
}

# Real drivers (tests/clients): psycopg, JDBC, node-postgres, ... through pgstash.
stage_clients() {
    if [ -x tests/clients/run.sh ]; then
        timeout --kill-after=30 "$CLIENTS_TIMEOUT" tests/clients/run.sh
    else
        eval "set -- ${PYTEST_ARGS:-}"
        timeout --signal=TERM --kill-after=30 "$CLIENTS_TIMEOUT" \
            "$PY" -m pytest -q -p no:cacheprovider -rfEs tests/clients "$@"
    fi
}

# Fuzz targets (tests/fuzz): replays the committed corpora and crash regressions, then 30 s of
# new inputs per target; any crash, leak or sanitizer report fails it.
stage_fuzz() {
    timeout --kill-after=30 "$FUZZ_TIMEOUT" tests/fuzz/run-corpus.sh
}

# The sanitizer build (ASan + UBSan, leak detection), unit + integration: part of the default
# run (issue 6); `make SANITIZE=address,undefined test` runs the default stages on that build.
stage_sanitizer() {
    if [ -n "${SANITIZE:-}" ]; then
        echo "already running on the sanitizer build"
        return 0
    fi
    make --no-print-directory SANITIZE=address,undefined build/san/pgstash unit-bins || return 1
    SANITIZE=address,undefined BUILD_DIR=$ROOT/build/san PGSTASH_BIN=$ROOT/build/san/pgstash \
        "$0" unit integration
}

# --- driver ------------------------------------------------------------------------------

if [ $# -gt 0 ]; then
    stages=("$@")
elif [ -n "${PGSTASH_TEST_STAGES:-}" ]; then
    read -r -a stages <<<"$PGSTASH_TEST_STAGES"
else
    stages=("${DEFAULT_STAGES[@]}")
    while IFS= read -r s; do [ -n "$s" ] && stages+=("$s"); done < <(auto_stages)
fi

for s in "${stages[@]}"; do
    if ! declare -F "stage_$s" >/dev/null; then
        echo "run-all: unknown stage '$s'" >&2
        exit 2
    fi
done

echo "run-all: stages: ${stages[*]} (variant $VARIANT, PGSTASH_BIN=$PGSTASH_BIN)"
results=()
overall=0
start_all=$SECONDS
for s in "${stages[@]}"; do
    echo
    echo "=============================== $s ==============================="
    t0=$SECONDS
    "stage_$s" 2>&1 | tee "$LOG_DIR/$s.log"
    rc=${PIPESTATUS[0]}
    dt=$((SECONDS - t0))
    if [ "$rc" -eq 0 ]; then
        results+=("$(printf '  %-12s PASS  %5ds' "$s" "$dt")")
    else
        results+=("$(printf '  %-12s FAIL  %5ds  (exit %d; log: build/test-logs/%s.log)' \
            "$s" "$dt" "$rc" "$s")")
        overall=1
    fi
done

echo
echo "=============================== summary ==============================="
printf '%s\n' "${results[@]}"
if [ "$overall" -eq 0 ]; then
    echo "run-all: all stages passed in $((SECONDS - start_all))s"
else
    echo "run-all: FAILED after $((SECONDS - start_all))s"
fi
exit $overall
