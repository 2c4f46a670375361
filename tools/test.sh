#!/usr/bin/env bash
# Builds berth and runs the whole test suite (unit, integration against real brokers
# and runc, fuzz-corpus replays), ending with ctest's summary.
#
#   tools/test.sh              # everything
#   tools/test.sh -L unit      # extra arguments go to ctest
#   tools/test.sh --sanitize   # the same suite built with ASan+UBSan in ./build-asan
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BUILD_DIR=${BUILD_DIR:-$here/build}
if [[ ${1:-} == --sanitize ]]; then
  shift
  export BUILD_DIR=$here/build-asan
  export BERTH_CMAKE_ARGS="${BERTH_CMAKE_ARGS:-} -DBERTH_SANITIZE=ON"
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/tests/lsan.supp}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi

"$here/tools/setup.sh"
jobs=$(nproc)
cmake --build "$BUILD_DIR" -j "$jobs"
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 600 -j "$jobs" "$@"
