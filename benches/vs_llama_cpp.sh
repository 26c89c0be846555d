#!/usr/bin/env bash
# openweigh against llama.cpp on the same GGUF file, the same threads, the
# same machine, in one run of this script:
#   1. speed: llama-bench (pp512, tg128) and openweigh's speed probe
#      (`openweigh bench`: a 512-token prefill; 128 tokens decoded after a
#      1-token prompt, as tg128 starts from an empty context), alternated
#      REPS times so machine drift falls on both; the median of each side.
#   2. multiple choice: `llama-perplexity --hellaswag` and `openweigh run` on the
#      same first ITEMS HellaSwag validation documents (file order, lm-eval's
#      preprocessing, zero-shot: benches/hellaswag-first.yaml), items/s from
#      each process's wall time (load included on both sides), and each tool's
#      own score: openweigh's acc_norm (log-likelihood / characters, lm-eval's),
#      llama.cpp's HellaSwag score (log-likelihood / tokens).
# The LAST line is the summary, ratios openweigh ÷ llama.cpp:
#   decode_ratio=… prefill_ratio=… mc_ratio=… acc_norm_ours=… acc_norm_llamacpp=…
#
# Usage: bash benches/vs_llama_cpp.sh [--model NAME] [--threads T] [--items N] [--reps R] [--avx2-only]
#   --model   catalog model (default smollm2-135m-instruct; gemma3-270m,
#             qwen2.5-coder-0.5b-instruct) or a .gguf path
#   --threads compute threads for both tools (default: nproc)
#   --items   HellaSwag documents (default 400)
#   --reps    speed alternations (default 3)
#   --avx2-only  both tools built for an AVX2-only x86 CPU (an AMD Zen 3, say)
#             and run here: llama.cpp with GGML_NATIVE=OFF (AVX2/FMA/F16C, no
#             AVX-512; .ci/llama_cpp.sh --avx2, its own cache folder) and
#             openweigh with `-C target-cpu=znver3 -C target-feature=-sse4a`
#             (a Zen 3's instruction sets bar AMD's SSE4a, which an Intel CPU
#             lacks: LLVM emits its `insertq` in crates such as regex), without
#             its `avx512` feature (target/avx2-only) and with candle's run-time K-quant
#             kernels held to AVX2 (MISTRALRS_FORCE_AVX2=1). The instruction
#             sets of such a CPU on this one's cores, clocks and memory: a
#             proxy for its ratios, not its absolute speeds.
# llama.cpp comes from .ci/llama_cpp.sh (built once into the cache, ~15 min).
# Not run by CI (minutes per model). Run nothing else on the machine meanwhile.
set -euo pipefail

MODEL=smollm2-135m-instruct
THREADS="$(nproc)"
ITEMS=400
REPS=3
AVX2_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --items) ITEMS="$2"; shift 2 ;;
        --reps) REPS="$2"; shift 2 ;;
        --avx2-only) AVX2_ONLY=1; shift ;;
        *) echo "vs_llama_cpp.sh: unknown argument '$1' (try --model, --threads, --items, --reps, --avx2-only)" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
if [ "$AVX2_ONLY" = 1 ]; then
    # RUSTFLAGS replaces .cargo/config.toml's target-cpu=native.
    RUSTFLAGS="-C target-cpu=znver3 -C target-feature=-sse4a" cargo build --release --quiet --no-default-features \
        --target-dir "$ROOT/target/avx2-only"
    OW="$ROOT/target/avx2-only/release/openweigh"
    # candle picks its K-quant (Q4_K/Q6_K) repack kernels at run time; this
    # variable of its own makes it take the AVX2 tier an AVX2-only CPU gets.
    export MISTRALRS_FORCE_AVX2=1
    LLAMA="$(bash .ci/llama_cpp.sh --avx2 | tail -n 1)"
    BUILD="AVX2-only builds (openweigh target-cpu=znver3 -sse4a, without avx512; llama.cpp GGML_NATIVE=OFF, AVX2)"
else
    cargo build --release --quiet
    OW="$ROOT/target/release/openweigh"
    LLAMA="$(bash .ci/llama_cpp.sh | tail -n 1)"
    BUILD="native builds (openweigh target-cpu=native; llama.cpp GGML_NATIVE)"
fi
export LD_LIBRARY_PATH="$LLAMA/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -f "$MODEL" ]; then GGUF="$MODEL"; else GGUF="$("$OW" fetch "$MODEL" | cut -f2)"; fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(grep -m1 '^flags' /proc/cpuinfo | grep -o 'avx512f' | head -n1 || echo 'no avx512f')), $(nproc) logical cpus; threads: $THREADS"
echo "model: $MODEL ($GGUF); llama.cpp: $(cat "$LLAMA/COMMIT" 2>/dev/null || echo '?') from llama-cpp-python 0.3.36; $BUILD"

# --- 1. speed -----------------------------------------------------------------
for r in $(seq 1 "$REPS"); do
    "$LLAMA/bin/llama-bench" -m "$GGUF" -t "$THREADS" -p 512 -n 128 -r 1 -o json \
        > "$WORK/llama-bench.$r.json" 2>"$WORK/llama-bench.$r.log"
    # Prefill as pp512; decode as tg128 (128 tokens from an empty context,
    # so the KV cache is as short as llama-bench's).
    "$OW" bench --model "$GGUF" --weights native --reps 1 --threads "$THREADS" \
        --prompt-tokens 512 --output-tokens 2 --json "$WORK/ow-pp.$r.json" >/dev/null
    "$OW" bench --model "$GGUF" --weights native --reps 1 --threads "$THREADS" \
        --prompt-tokens 1 --output-tokens 129 --json "$WORK/ow-tg.$r.json" >/dev/null
    echo "speed repetition $r/$REPS done" >&2
done

# --- 2. HellaSwag ---------------------------------------------------------------
"$OW" suites items benches/hellaswag-first.yaml --limit "$ITEMS" > "$WORK/items.jsonl"
python3 - "$WORK/items.jsonl" "$WORK/hellaswag.txt" <<'PY'
import json, sys
# llama.cpp's HellaSwag file: 6 lines per task (context, gold index, 4 endings).
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as out:
    for line in f:
        it = json.loads(line)
        fields = [it["prompt"], str(it["gold"])] + it["choices"]
        assert len(fields) == 6 and not any("\n" in x for x in fields), it["id"]
        out.write("\n".join(fields) + "\n")
PY
t0=$(date +%s.%N)
"$LLAMA/bin/llama-perplexity" -m "$GGUF" -t "$THREADS" -f "$WORK/hellaswag.txt" --hellaswag \
    --hellaswag-tasks "$ITEMS" > "$WORK/perplexity.log" 2>&1
t1=$(date +%s.%N)
"$OW" run --model "$GGUF" --suite benches/hellaswag-first.yaml --limit "$ITEMS" --threads "$THREADS" \
    --weights native --probe-reps 0 --no-report --out "$WORK/results" > "$WORK/run.log" 2>&1
t2=$(date +%s.%N)

python3 - "$WORK" "$REPS" "$ITEMS" "$t0" "$t1" "$t2" <<'PY'
import csv, glob, json, re, statistics, sys
work, reps, items = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0, t1, t2 = map(float, sys.argv[4:7])
pp, tg, ow_pp, ow_tg = [], [], [], []
for r in range(1, reps + 1):
    for test in json.load(open(f"{work}/llama-bench.{r}.json")):
        (pp if test["n_prompt"] > 0 else tg).append(test["avg_ts"])
    ow_pp.append(json.load(open(f"{work}/ow-pp.{r}.json"))[0]["probe"]["prefill_tok_per_s"]["mean"])
    ow_tg.append(json.load(open(f"{work}/ow-tg.{r}.json"))[0]["probe"]["decode_tok_per_s"]["mean"])
med = statistics.median
log = open(f"{work}/perplexity.log").read()
# The last row of llama-perplexity's HellaSwag table: "400\t35.25000000%\t[low%, high%]"
rows = re.findall(r"^(\d+)\t([0-9.]+)%?\t", log, re.M)
if not rows or int(rows[-1][0]) != items:
    sys.exit(f"llama-perplexity did not score {items} tasks; its log:\n" + log[-2000:])
acc_llama = float(rows[-1][1])
run = glob.glob(f"{work}/results/*/run.json")[0]
meta = json.load(open(run))
summary = {(r["task"], r["group"], r["metric"]): r for r in csv.DictReader(open(run.replace("run.json", "summary.csv")))}
acc_ours = 100 * float(summary[("hellaswag", "", "acc_norm")]["score"])
acc_ours_raw = 100 * float(summary[("hellaswag", "", "acc")]["score"])
# llama.cpp's rule on our log-likelihoods: the choice with the highest mean
# log-prob per token (its score is that, not lm-eval's per-character acc_norm).
per_token = []
for line in open(run.replace("run.json", "samples.jsonl")):
    it = json.loads(line)
    ll = [c["logprob"] / c["n_tokens"] for c in it["loglik"]]
    per_token.append(max(range(len(ll)), key=ll.__getitem__) == int(it["gold"]))
acc_tok_ours = 100 * sum(per_token) / len(per_token)
if meta["n_items"] != items or meta["n_failed"]:
    sys.exit(f"openweigh ran {meta['n_items']} items with {meta['n_failed']} failures, expected {items}")
llama_ips, ours_ips = items / (t1 - t0), items / (t2 - t1)
print(f"prefill tok/s   llama-bench pp512 {med(pp):8.1f}   openweigh {med(ow_pp):8.1f}   (medians of {reps}: {pp} / {[round(x, 1) for x in ow_pp]})")
print(f"decode  tok/s   llama-bench tg128 {med(tg):8.1f}   openweigh {med(ow_tg):8.1f}   (medians of {reps}: {tg} / {[round(x, 1) for x in ow_tg]})")
print(f"HellaSwag {items} items  llama-perplexity {t1 - t0:6.1f} s ({llama_ips:.2f} items/s, score {acc_llama:.2f})"
      f"   openweigh {t2 - t1:6.1f} s ({ours_ips:.2f} items/s; items alone {meta['eval_s']:.1f} s;"
      f" acc_norm {acc_ours:.2f}, acc {acc_ours_raw:.2f}, llama.cpp's per-token rule {acc_tok_ours:.2f});"
      f" peak RSS openweigh {meta['peak_rss_byte'] / 2**20:.0f} MiB")
print(f"decode_ratio={med(ow_tg) / med(tg):.2f} prefill_ratio={med(ow_pp) / med(pp):.2f} "
      f"mc_ratio={ours_ips / llama_ips:.2f} acc_norm_ours={acc_ours:.2f} acc_norm_llamacpp={acc_llama:.2f}")
PY
