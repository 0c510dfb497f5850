#!/usr/bin/env bash
# tests/fuzz/run.sh — what `make fuzz` runs: builds the libFuzzer targets and fuzzes each one
# for SECONDS (default 60), starting from its committed corpus and regression inputs. New
# interesting inputs go to build/fuzz/corpus/<target>/ (not committed: minimise and copy the
# good ones into tests/fuzz/corpus/ by hand); crashes, leaks and hangs are written to
# tests/fuzz/artifacts/ and fail the run.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]      e.g. tests/fuzz/run.sh 600 frontend
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/fuzz/targets.sh

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${FUZZ_TARGETS[@]}")

fuzz_build || exit 1
mkdir -p tests/fuzz/artifacts build/fuzz/logs
failed=0
summary=()
for t in "${targets[@]}"; do
    [ -x "$FUZZ_BIN/fuzz_$t" ] || { echo "fuzz: no target '$t'"; exit 2; }
    mkdir -p "build/fuzz/corpus/$t"
    dirs=("build/fuzz/corpus/$t" "tests/fuzz/corpus/$t")
    [ -d "tests/fuzz/regressions/$t" ] && dirs+=("tests/fuzz/regressions/$t")
    log=build/fuzz/logs/$t.log
    echo "== fuzz_$t: ${seconds}s (log: $log)"
    mapfile -t opts < <(fuzz_opts "$t")
    "$FUZZ_BIN/fuzz_$t" "${opts[@]}" -max_total_time="$seconds" \
        -artifact_prefix="tests/fuzz/artifacts/$t-" "${dirs[@]}" >"$log" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
        grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$log" | head -20
        summary+=("$(printf '  %-9s FAIL (exit %d) %s exec/s' "$t" $rc "$(fuzz_execs "$log")")")
        failed=1
    else
        summary+=("$(printf '  %-9s ok   %6s exec/s' "$t" "$(fuzz_execs "$log")")")
    fi
done
echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
[ $failed -eq 0 ] || echo "fuzz: failures; inputs in tests/fuzz/artifacts/ (reproduce: $FUZZ_BIN/fuzz_<target> FILE)"
exit $failed
