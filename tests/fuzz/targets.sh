# tests/fuzz/targets.sh — what run.sh and run-corpus.sh share (sourced, not run): the list of
# targets, their libFuzzer options and the build. Paths are relative to the repository root.

FUZZ_TARGETS=(frontend backend entry sqlparse config scram)
FUZZ_BIN=build/fuzz

# Largest input each target is given (libFuzzer -max_len).
fuzz_max_len() {
    case "$1" in
    frontend) echo 24576 ;;
    backend) echo 32768 ;;
    entry) echo 16384 ;;
    config) echo 8192 ;;
    scram) echo 2048 ;;
    *) echo 4096 ;;
    esac
}

# Options every run uses. -close_fd_mask=2 silences pgstash's own log lines (the harness logs
# at debug level so that their formatting is fuzzed too); sanitizer and libFuzzer reports
# still reach stderr. A single input slower than -timeout counts as a hang.
fuzz_opts() {
    local t=$1
    local opts=(-max_len="$(fuzz_max_len "$t")" -timeout=25 -rss_limit_mb=3072
        -close_fd_mask=2 -print_final_stats=1)
    [ -f "tests/fuzz/$t.dict" ] && opts+=(-dict="tests/fuzz/$t.dict")
    printf '%s\n' "${opts[@]}"
}

# Builds every target (incrementally) with clang; needs the `fuzz` package group.
fuzz_build() {
    local jobs
    jobs=$(nproc 2>/dev/null || echo 2)
    mkdir -p build
    make --no-print-directory -f tests/fuzz/fuzz.mk -j"$jobs" >build/fuzz-build.log 2>&1 || {
        tail -40 build/fuzz-build.log
        echo "fuzz: build failed (full log: build/fuzz-build.log)"
        return 1
    }
}

# The executions per second a run reported (its -print_final_stats line).
fuzz_execs() {
    sed -n 's/^stat::average_exec_per_sec: *//p' "$1" | tail -1
}

# Symbolised stack traces in reports even where llvm-symbolizer is not on PATH.
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
    export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi
