#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ one after the other (docs/reliability.md, "Fuzzing").
#
#   scripts/fuzz.sh [seconds-per-target] [target ...]     default: 600 s, every target
#
# Needs a nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz`). Each target runs niced (FUZZ_NICE, default 10: the build and the
# run yield to interactive work), in one process (-jobs=1 -workers=1),
# bounded by -max_total_time, starting from the committed seeds (fuzz/corpus/<target>/);
# what it learns goes to fuzz/work/<target>/ (not committed), crashes to
# fuzz/work/<target>/artifacts/. A summary line per target is printed at the end and kept in
# fuzz/work/summary.tsv. The exit status is 1 when a target found a crash.
#
# CARGO_TARGET_DIR defaults to target/fuzz (the nightly build is kept apart from stable's).
set -euo pipefail

seconds="${1:-600}"
niceness="${FUZZ_NICE:-10}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/fuzz}"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz on a nightly toolchain is needed: rustup toolchain install nightly && cargo install cargo-fuzz" >&2
    exit 2
fi

# No sanitizer (the crates are safe Rust; ASan would halve the executions), but debug
# assertions and overflow checks on, so an arithmetic overflow is a crash.
flags=(--sanitizer none --debug-assertions)
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
# The targets on the gateway crate need its feature (a much longer build); the others build
# on the filters crate alone.
for t in "${targets[@]}"; do
    case "$t" in jwt | config_load) flags+=(--features gateway) && break ;; esac
done
nice -n "$niceness" cargo +nightly fuzz build "${flags[@]}"

mkdir -p work
summary=work/summary.tsv
printf 'target\tseconds\texecs\texecs_per_s\tcov\tft\tcorpus\tpeak_rss_mb\tresult\n' >"$summary"
status=0
for t in "${targets[@]}"; do
    mkdir -p "work/$t/corpus" "work/$t/artifacts"
    rm -f fuzz-0.log
    echo "== $t: ${seconds}s"
    start=$(date +%s)
    set +e
    nice -n "$niceness" cargo +nightly fuzz run "${flags[@]}" "$t" "work/$t/corpus" "corpus/$t" -- \
        -max_total_time="$seconds" -jobs=1 -workers=1 -print_final_stats=1 \
        -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="work/$t/artifacts/" >"work/$t/run.log" 2>&1
    set -e
    elapsed=$(( $(date +%s) - start ))
    log="work/$t/run.log"
    if [ -f fuzz-0.log ]; then
        cat fuzz-0.log >>"$log"
        rm fuzz-0.log
    fi
    execs=$(grep -o -E 'stat::number_of_executed_units: +[0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
    rate=$(grep -o -E 'stat::average_exec_per_sec: +[0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
    rss=$(grep -o -E 'stat::peak_rss_mb: +[0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
    last=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -1 || true)
    cov=$(sed -E 's/.*cov: ([0-9]+).*/\1/' <<<"$last")
    ft=$(sed -E 's/.*ft: ([0-9]+).*/\1/' <<<"$last")
    corp=$(sed -E 's/.*corp: ([0-9]+).*/\1/' <<<"$last")
    if ls "work/$t/artifacts/" | grep -q .; then
        result="CRASH: $(ls "work/$t/artifacts/" | tr '\n' ' ')"
        status=1
    else
        result="no crash"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$elapsed" "${execs:-?}" "${rate:-?}" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "${rss:-?}" "$result" >>"$summary"
    tail -1 "$summary"
done
echo
column -t -s $'\t' "$summary"
exit "$status"
