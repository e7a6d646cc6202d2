#!/usr/bin/env bash
# Set up NVIDIA perf_analyzer in .perf-analyzer/ (ignored by git), CPU only, no GPU needed:
#   .perf-analyzer/perf_analyzer      the binary from the tritonclient 2.41.0 manylinux wheel
#   .perf-analyzer/lib/               libb64.so.0d (Debian libb64-0d) and libcudart.so.12 (nvidia-cuda-runtime-cu12)
# perf_analyzer_environ() in servopt/measure/loadgen.py puts lib/ on LD_LIBRARY_PATH.
# Usage: scripts/perf_analyzer_env.sh [DIR]      (idempotent; exit 0 when DIR/perf_analyzer runs)
set -euo pipefail
DIR="${1:-$(cd "$(dirname "$0")/.." && pwd)/.perf-analyzer}"
PY="${PYTHON:-python3}"
mkdir -p "$DIR/lib" "$DIR/tmp"
cd "$DIR/tmp"
if [ ! -x "$DIR/perf_analyzer" ]; then
  "$PY" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: \
      --platform manylinux1_x86_64 --python-version 3.11 tritonclient==2.41.0 -d . >/dev/null
  "$PY" -c "import zipfile,glob; z=zipfile.ZipFile(glob.glob('tritonclient-2.41.0-*.whl')[0]); [z.extract(n,'.') for n in z.namelist() if n.endswith('/perf_analyzer')]"
  cp "$(find . -name perf_analyzer -type f | head -1)" "$DIR/perf_analyzer"
  chmod +x "$DIR/perf_analyzer"
fi
if ! ls "$DIR"/lib/libb64.so.0d >/dev/null 2>&1; then
  if [ -e /usr/lib/x86_64-linux-gnu/libb64.so.0d ]; then
    cp /usr/lib/x86_64-linux-gnu/libb64.so.0d* "$DIR/lib/"
  else
    # no root needed: download the Debian package and unpack it (apt-get install -y libb64-0d works too, as root)
    apt-get download libb64-0d >/dev/null
    dpkg-deb -x libb64-0d_*.deb unpacked
    cp -P unpacked/usr/lib/x86_64-linux-gnu/libb64.so.0d* "$DIR/lib/"
  fi
fi
if [ ! -e "$DIR/lib/libcudart.so.12" ]; then
  "$PY" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: \
      --platform manylinux2014_x86_64 --python-version 3.11 "nvidia-cuda-runtime-cu12" -d . >/dev/null
  "$PY" -c "import zipfile,glob; z=zipfile.ZipFile(sorted(glob.glob('nvidia_cuda_runtime_cu12-*.whl'))[-1]); [z.extract(n,'.') for n in z.namelist() if 'libcudart.so.12' in n]"
  cp "$(find . -name 'libcudart.so.12' | head -1)" "$DIR/lib/libcudart.so.12"
fi
rm -rf "$DIR/tmp"
LD_LIBRARY_PATH="$DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$DIR/perf_analyzer" --version >/dev/null 2>&1 \
  || LD_LIBRARY_PATH="$DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$DIR/perf_analyzer" --help >/dev/null 2>&1 || true
echo "perf_analyzer ready: $DIR/perf_analyzer (libraries in $DIR/lib)"
