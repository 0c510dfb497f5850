#!/usr/bin/env bash
# tests/fuzz/run-corpus.sh — the `fuzz` stage of `make test` (tests/run-all.sh runs it when it
# is executable): builds the libFuzzer targets, replays every committed input through each
# (tests/fuzz/corpus/<target>/ and the crash regressions in tests/fuzz/regressions/<target>/),
# then fuzzes each for FUZZ_NEW_SECONDS (default 30) of new inputs. Any crash, sanitizer
# report, leak, left-open descriptor or hang fails the stage; the input that did it is kept
# in tests/fuzz/artifacts/. Targets run FUZZ_PARALLEL (default 2) at a time, so the stage
# stays well under five minutes.
#
#   tests/fuzz/run-corpus.sh [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/fuzz/targets.sh

new_seconds=${FUZZ_NEW_SECONDS:-30}
parallel=${FUZZ_PARALLEL:-2}
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${FUZZ_TARGETS[@]}")

bash scripts/install-deps.sh fuzz || exit 1
t0=$SECONDS
fuzz_build || exit 1
echo "fuzz: targets built in $((SECONDS - t0))s"

# A directory of this run's own: logs and new inputs (kept when the stage fails).
mkdir -p build/fuzz tests/fuzz/artifacts
work=$(mktemp -d build/fuzz/run-corpus.XXXXXX) || exit 1

# One target: replay, then new inputs. Writes $work/<target>.result.
run_target() {
    local t=$1 log=$work/$1.log
    local bin=$FUZZ_BIN/fuzz_$t
    local dirs=("tests/fuzz/corpus/$t")
    [ -d "tests/fuzz/regressions/$t" ] && dirs+=("tests/fuzz/regressions/$t")
    mapfile -t opts < <(fuzz_opts "$t")
    local n t0=$SECONDS
    n=$(find "${dirs[@]}" -type f | wc -l)
    if ! "$bin" "${opts[@]}" -runs=0 -artifact_prefix="tests/fuzz/artifacts/$t-" "${dirs[@]}" \
        >"$log.replay" 2>&1; then
        echo "FAIL replaying $n committed inputs (log: $log.replay)" >"$work/$t.result"
        return
    fi
    # The fuzzing run loads the corpus again first: give it that time on top.
    local total=$((new_seconds + SECONDS - t0 + 1))
    mkdir -p "$work/$t-new"
    if ! "$bin" "${opts[@]}" -max_total_time="$total" \
        -artifact_prefix="tests/fuzz/artifacts/$t-" "$work/$t-new" "${dirs[@]}" >"$log" 2>&1; then
        echo "FAIL while fuzzing (log: $log)" >"$work/$t.result"
        return
    fi
    printf 'ok   %4d inputs replayed, %ss new: %6s exec/s, %s new units\n' "$n" "$new_seconds" \
        "$(fuzz_execs "$log")" "$(sed -n 's/^stat::new_units_added: *//p' "$log")" \
        >"$work/$t.result"
}

running=0
for t in "${targets[@]}"; do
    [ -x "$FUZZ_BIN/fuzz_$t" ] || { echo "fuzz: no target '$t'"; exit 2; }
    run_target "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$parallel" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

failed=0
for t in "${targets[@]}"; do
    result=$(cat "$work/$t.result" 2>/dev/null || echo "FAIL (no result)")
    printf '  %-9s %s\n' "$t" "$result"
    if [[ $result != ok* ]]; then
        failed=1
        for f in "$work/$t.log.replay" "$work/$t.log"; do
            [ -f "$f" ] && grep -E "ERROR|SUMMARY|runtime error|Test unit written|harness:" "$f" |
                head -15 | sed 's/^/      /'
        done
    fi
done
if [ $failed -ne 0 ]; then
    echo "fuzz: FAILED; the inputs are in tests/fuzz/artifacts/ (reproduce: $FUZZ_BIN/fuzz_<target> FILE;"
    echo "      once fixed, keep each as tests/fuzz/regressions/<target>/<name>); logs in $work"
else
    rm -rf "$work"
fi
exit $failed
