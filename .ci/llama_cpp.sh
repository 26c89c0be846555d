#!/usr/bin/env bash
# Builds llama.cpp (llama-server, llama-bench, llama-perplexity and the shared
# libllama) with cmake from the llama.cpp source inside the pinned
# llama-cpp-python==0.3.36 sdist, once, into the openweigh download cache:
#   $CACHE/llama.cpp-0.3.36/bin/{llama-server,llama-bench,llama-perplexity}
#   $CACHE/llama.cpp-0.3.36/lib/libllama.so (and libggml*)
# and, with --python, llama-cpp-python's OpenAI-compatible server in a venv
# beside it ($CACHE/llama.cpp-0.3.36/venv), using that same libllama (no second
# build: LLAMA_BUILD=OFF, LLAMA_CPP_LIB_PATH at run time).
# A finished build is reused (marker file); about 10-15 min on 2 cores.
# With --avx2: built for AVX2-only x86 CPUs (GGML_NATIVE=OFF: AVX2, FMA, F16C,
# BMI2, no AVX-512) into $CACHE/llama.cpp-0.3.36-avx2 (llama-bench and
# llama-perplexity only), for benches/vs_llama_cpp.sh --avx2-only.
# Prints the install folder as its last line.
set -euo pipefail

VERSION=0.3.36
CACHE="${OPENWEIGH_CACHE:-${OPENWEIGH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/openweigh}}"
WITH_PYTHON=0
AVX2=0
for arg in "$@"; do
    case "$arg" in
        --python) WITH_PYTHON=1 ;;
        --avx2) AVX2=1 ;;
        *) echo "llama_cpp.sh: unknown argument '$arg' (try --python, --avx2)" >&2; exit 2 ;;
    esac
done
PREFIX="$CACHE/llama.cpp-$VERSION"
TARGETS=(llama-server llama-bench llama-perplexity llama)
CPU_FLAGS=()
if [ "$AVX2" = 1 ]; then
    [ "$WITH_PYTHON" = 1 ] && { echo "llama_cpp.sh: --python and --avx2 do not go together" >&2; exit 2; }
    PREFIX="$CACHE/llama.cpp-$VERSION-avx2"
    TARGETS=(llama-bench llama-perplexity llama)
    CPU_FLAGS=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
        -DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX_VNNI=OFF)
fi

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v g++ >/dev/null 2>&1 || need+=(g++)
if [ "$WITH_PYTHON" = 1 ]; then
    python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -E)
    "${sudo[@]}" apt-get update -qq >&2
    "${sudo[@]}" apt-get install -y -qq "${need[@]}" >&2
fi

mkdir -p "$CACHE/wheels"
SDIST="$CACHE/wheels/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
    # Only this package from source: its build dependencies stay wheels.
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$VERSION" -d "$CACHE/wheels" >&2
fi

if [ ! -f "$PREFIX/.built" ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    tar -xzf "$SDIST" -C "$work"
    src="$work/llama_cpp_python-$VERSION/vendor/llama.cpp"
    echo "building llama.cpp from $SDIST (once; about 10-15 min on 2 cores)" >&2
    cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=ON -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON -DCMAKE_INSTALL_RPATH='$ORIGIN/../lib;$ORIGIN' \
        ${CPU_FLAGS[@]+"${CPU_FLAGS[@]}"} >&2
    cmake --build "$work/build" -j "$(nproc)" --target "${TARGETS[@]}" >&2
    mkdir -p "$PREFIX/bin" "$PREFIX/lib"
    for t in "${TARGETS[@]}"; do
        [ "$t" = llama ] || cp -a "$work/build/bin/$t" "$PREFIX/bin/"
    done
    find "$work/build" -name '*.so*' -exec cp -a {} "$PREFIX/lib/" \;
    (cd "$src" && git describe --always 2>/dev/null || true) > "$PREFIX/COMMIT"
    touch "$PREFIX/.built"
fi

if [ "$WITH_PYTHON" = 1 ] && [ ! -f "$PREFIX/venv/.built" ]; then
    echo "installing llama-cpp-python[server]==$VERSION into $PREFIX/venv (its libllama is ours)" >&2
    python3 -m venv "$PREFIX/venv"
    CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" "$PREFIX/venv/bin/python" -m pip install --quiet \
        "$SDIST[server]" >&2
    touch "$PREFIX/venv/.built"
fi

echo "$PREFIX"
