#!/usr/bin/env bash
# Install Triton's perf_analyzer, to check `skoots-client bench` against it
# (tests/functional/test_bench_vs_perf_analyzer.py): bash benchmarks/install_perf_analyzer.sh [DIR]
#
# The tritonclient 2.41.0 manylinux wheel ships bin/perf_analyzer (later wheels need glibc 2.38);
# it links Debian's libb64 and the CUDA runtime (libcudart.so.12, from the nvidia-cuda-runtime-cu12
# wheel), and runs without a GPU. Both go into DIR (default ~/.cache/skoots-triton/perf_analyzer)
# in their own venv — an old tritonclient must not meet the project's — and DIR/perf_analyzer is a
# wrapper that puts the two libraries on LD_LIBRARY_PATH. Idempotent: a working wrapper is kept.
# No root: the .deb is fetched with `apt-get download` and unpacked with `dpkg -x`.
set -euo pipefail

dir="${1:-$HOME/.cache/skoots-triton/perf_analyzer}"
wrapper="$dir/perf_analyzer"
if [ -x "$wrapper" ] && "$wrapper" --version >/dev/null 2>&1; then
    echo "perf_analyzer: $wrapper (already installed)"
    exit 0
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
wrapper="$dir/perf_analyzer"

python3 -m venv "$dir/venv"
# --no-deps: only the binary and the runtime library are used, never the old Python client.
"$dir/venv/bin/python" -m pip install --quiet --no-deps tritonclient==2.41.0 nvidia-cuda-runtime-cu12
binary="$(find "$dir/venv" -path '*/bin/perf_analyzer' -type f | head -n 1)"
cudart="$(dirname "$(find "$dir/venv" -name 'libcudart.so.12' | head -n 1)")"
[ -n "$binary" ] || { echo "error: tritonclient 2.41.0 installed no bin/perf_analyzer" >&2; exit 1; }

# libb64: Debian's libb64-0d, unpacked where the wrapper finds it.
deb_dir="$(mktemp -d)"
trap 'rm -rf "$deb_dir"' EXIT
download() { (cd "$deb_dir" && apt-get download libb64-0d >/dev/null 2>&1); }
if ! download; then
    # A fresh machine may have no package lists yet: refresh them where allowed, then try again.
    if [ "$(id -u)" = 0 ]; then apt-get update >/dev/null; elif sudo -n true 2>/dev/null; then sudo apt-get update >/dev/null; fi
    download || { echo "error: apt-get download libb64-0d failed; run apt-get update as root, then this again" >&2; exit 1; }
fi
rm -rf "$dir/libb64"
dpkg -x "$deb_dir"/libb64-0d_*.deb "$dir/libb64"
b64="$(dirname "$(find "$dir/libb64" -name 'libb64.so.0d' | head -n 1)")"

cat >"$wrapper" <<EOF
#!/usr/bin/env bash
# perf_analyzer from tritonclient 2.41.0, with its libraries (benchmarks/install_perf_analyzer.sh).
export LD_LIBRARY_PATH="$cudart:$b64\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$binary" "\$@"
EOF
chmod +x "$wrapper"
"$wrapper" --version >/dev/null 2>&1 || { echo "error: $wrapper does not run; see: $wrapper --version" >&2; exit 1; }
echo "perf_analyzer: $wrapper"
