#!/usr/bin/env bash
# Fuzzes openweigh's readers of untrusted input with libFuzzer (cargo fuzz).
#   bash fuzz/run.sh SECONDS [TARGET ...]     (default: every target)
# Each target runs SECONDS on its corpus: fuzz/corpus/TARGET (kept between
# runs; $OPENWEIGH_FUZZ_CORPUS moves it) seeded from fuzz/seeds/TARGET.
# A crash stops the script with exit 1 and leaves the input in
# fuzz/artifacts/TARGET/; copy it to fuzz/regressions/TARGET/ once fixed, so
# `cargo test --test fuzz_regressions` replays it on stable for ever.
# Needs cargo-fuzz (installed here from crates.io when missing) and a
# nightly toolchain; without nightly, stable runs with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: bash fuzz/run.sh SECONDS [TARGET ...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(suite template data arrow prices gguf lm_eval)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz@0.13.2
toolchain=()
no_asan=()
if rustup run nightly rustc --version >/dev/null 2>&1; then
    toolchain=(+nightly)
else
    echo "fuzz/run.sh: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1, without AddressSanitizer" >&2
    export RUSTC_BOOTSTRAP=1
    no_asan=(-s none)
fi

corpus_root=${OPENWEIGH_FUZZ_CORPUS:-fuzz/corpus}
# -O -a: release with debug assertions (overflow checks on: a length that
# wraps is a crash, not a wrong number); AddressSanitizer by default. One
# build for all targets, in $OPENWEIGH_FUZZ_TARGET when set (CI keeps it in
# the download cache, so a later run rebuilds only openweigh).
build=(-O -a "${no_asan[@]}" --target-dir "${OPENWEIGH_FUZZ_TARGET:-fuzz/target}")
cargo "${toolchain[@]}" fuzz build "${build[@]}"
for t in "${targets[@]}"; do
    mkdir -p "$corpus_root/$t" "fuzz/artifacts/$t"
    echo "== fuzz $t: ${seconds}s"
    # timeout: one input may take 10 s (a template's fuel, a gzip bomb's cap);
    # rss_limit: 2 GiB, so a reader that allocates what the input claims fails.
    if ! cargo "${toolchain[@]}" fuzz run "${build[@]}" "$t" "$corpus_root/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" 2>"fuzz/artifacts/$t.log"; then
        tail -40 "fuzz/artifacts/$t.log" >&2
        echo "fuzz/run.sh: target $t crashed; input in fuzz/artifacts/$t/, reproduce with: cargo +nightly fuzz run ${build[*]} $t fuzz/artifacts/$t/<file>" >&2
        exit 1
    fi
    grep -E "^stat::(number_of_executed_units|peak_rss_mb)|^Done" "fuzz/artifacts/$t.log" || true
done
