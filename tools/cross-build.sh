#!/usr/bin/env bash
# Cross-builds berth for arm64 with Debian's cross compiler and Debian's arm64 packages,
# then runs the unit tests (ctest label "unit") and the in-process benchmarks under
# qemu-user. Installs what it needs with apt.
#
#   tools/cross-build.sh arm64            # everything: packages, build, unit tests, benchmarks
#   tools/cross-build.sh arm64 --smoke    # packages, then core and its unit tests only
#   BUILD_DIR=build-arm64 tools/cross-build.sh arm64
#
# Only the host side is installed: g++-aarch64-linux-gnu and qemu-user-static (new
# packages, nothing upgraded). The arm64 libraries and headers (libssl-dev:arm64, ... and
# everything they depend on) are downloaded with apt and unpacked with dpkg -x into
# <build>/sysroot, not installed with multiarch: a Multi-Arch: same package must have the
# very version of its amd64 twin, so installing libssl-dev:arm64 would upgrade the amd64
# libssl/openssl everything else on the machine builds and runs against, and
# libwebsockets-dev:arm64 cannot be co-installed at all (one header path, two contents).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
arch=${1:-}
smoke=0
[[ ${2:-} == --smoke ]] && smoke=1
case $arch in
  arm64) triplet=aarch64-linux-gnu; qemu=qemu-aarch64-static ;;
  *) echo "usage: tools/cross-build.sh arm64 [--smoke]" >&2; exit 2 ;;
esac
build=${BUILD_DIR:-$here/build-$arch}
sysroot=$build/sysroot
sudo=""
[[ $(id -u) -eq 0 ]] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive

host_packages=(g++-$triplet qemu-user-static cmake ninja-build pkg-config protobuf-compiler file)
target_packages=(libc6-dev libstdc++-12-dev libprotobuf-dev libsqlite3-dev libssl-dev libpaho-mqttpp-dev
                 libpaho-mqtt-dev libcurl4-openssl-dev libarchive-dev libcgroup-dev zlib1g-dev
                 libwebsockets-dev catch2)
# Header-only and architecture-independent packages the build uses.
all_packages=(nlohmann-json3-dev libcli11-dev)

# 1. Host packages, checked with a dry run first: nothing may be removed or upgraded.
missing=()
for p in "${host_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  plan=$(apt-get -s install -y --no-install-recommends "${missing[@]}" 2>&1) || { echo "$plan" >&2; exit 1; }
  if grep -E '^(Remv |Inst [^ ]+ \[)' <<<"$plan"; then
    echo "cross-build: installing ${missing[*]} would remove or upgrade the packages above; not doing it" >&2
    exit 1
  fi
  for i in 1 2 3 4 5 6; do
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" && break
    echo "cross-build: apt busy, retrying" >&2; sleep 10
  done
fi

# 2. The sysroot: the arm64 packages and their whole dependency closure (apt resolves it
#    against an empty package database), downloaded and unpacked.
if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
  # Lets apt see arm64 package lists; installs nothing.
  $sudo dpkg --add-architecture "$arch"
  $sudo apt-get update -q
fi
if [[ ! -f $sysroot/.complete ]]; then
  rm -rf "$sysroot"
  mkdir -p "$sysroot/debs"
  apt-get -s -o Dir::State::status=/dev/null install -y --no-install-recommends \
      "${target_packages[@]/%/:$arch}" "${all_packages[@]}" 2>/dev/null |
    awk -v a="[$arch])" '/^Inst / && (index($0, a) || index($0, "[all])")) { print $2 "=" substr($3, 2) }' > "$sysroot/packages.txt"
  (cd "$sysroot/debs" && xargs -a "$sysroot/packages.txt" apt-get download -q)
  for deb in "$sysroot"/debs/*.deb; do dpkg -x "$deb" "$sysroot"; done
  # Debian 12 is merged-/usr on real systems; dpkg -x leaves /lib and /usr/lib apart.
  for d in lib lib64 bin sbin; do
    if [[ -d $sysroot/$d && ! -L $sysroot/$d ]]; then
      mkdir -p "$sysroot/usr/$d"
      cp -a "$sysroot/$d/." "$sysroot/usr/$d/"
      rm -rf "${sysroot:?}/$d"
      ln -s "usr/$d" "$sysroot/$d"
    fi
  done
  rm -rf "$sysroot/debs"
  touch "$sysroot/.complete"
fi
# Absolute symlinks (libcap.so -> /lib/<triplet>/libcap.so.2) point out of the sysroot.
# Made relative, so a moved build directory keeps working and a rerun finds none.
find "$sysroot" -type l -lname '/*' -print0 | while IFS= read -r -d '' l; do
  t=$(readlink "$l")
  [[ $t == "$sysroot"/* ]] || t=$sysroot$t
  ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$t")" "$l"
done
# CMake packages that name libraries by absolute path (libwebsockets' targets link
# "/usr/lib/<triplet>/libssl.so") would send the linker to the build machine's own
# files: point those paths into the sysroot. Idempotent.
find "$sysroot/usr/lib/$triplet/cmake" -name '*.cmake' -print0 2>/dev/null |
  xargs -0 -r sed -i -E "/INTERFACE_LINK_LIBRARIES|foreach\(item/ s#([\";])/usr/lib/$triplet/#\1$sysroot/usr/lib/$triplet/#g"

# 3. Configure and build: first what runs under qemu-user here (the unit-test programs,
#    the in-process benchmarks) and the programs an image ships, so their results come
#    early; everything else (integration tests, which need real brokers and runc and are
#    not run here) at the end.
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-RelWithDebInfo} \
  -DCMAKE_TOOLCHAIN_FILE="$here/cmake/toolchains/$triplet.cmake" -DBERTH_CROSS_SYSROOT="$sysroot" \
  ${BERTH_CMAKE_ARGS:-}
if ((smoke)); then
  cmake --build "$build" -j "$(nproc)" --target berth_core_tests
else
  mapfile -t units < <(ninja -C "$build" -t targets all | awk -F: '$1 ~ /^tests\/berth_[a-z0-9_]+_tests$/ { sub("tests/", "", $1); print $1 }')
  cmake --build "$build" -j "$(nproc)" --target berthd berthctl berth-oci berth-dm-bench berth-notify-bench "${units[@]}"
  file -L "$build/agent/berthd"
  $triplet-strip -o "$build/berthd.stripped" "$build/agent/berthd"
  echo "cross-build: stripped berthd ($arch, ${CMAKE_BUILD_TYPE:-RelWithDebInfo}): $(stat -c %s "$build/berthd.stripped") bytes"
fi
file "$build/core/libberth_core.a" >/dev/null

# 4. Unit tests and in-process benchmarks under qemu-user.
# What qemu-user 7.2 itself cannot do, so these tests are skipped there (they pass on
# arm64 hardware and on x86-64): prctl(PR_SET_CHILD_SUBREAPER) fails with EINVAL, and a
# failed execve in a spawned child is not reported back to the parent, and openat2 is not
# emulated (ENOSYS; berth then refuses every HostObject rather than resolving it unsafely).
qemu_limits='^(openBeneath opens what lies below the directory and refuses links, escapes and missing paths|Spawning a missing program is a clear error|The subreaper reaps orphans reparented to it but never a ChildProcess it does not own|A claimed pid is left alone by the subreaper sweep until released)$'
cd "$build"
echo "cross-build: skipped under qemu-user 7.2 (subreaper prctl, execve failure reporting and openat2 are not emulated):"
tr '|' '\n' <<<"${qemu_limits:2:-2}" | sed 's/^/  /'
if ((smoke)); then
  ctest --output-on-failure --no-tests=error -L unit -E "$qemu_limits" --timeout 300
  exit 0
fi
ctest --output-on-failure --no-tests=error -L unit -E "$qemu_limits" -j "$(nproc)" --timeout 600
for bench in tools/dm-bench/berth-dm-bench tools/notify-bench/berth-notify-bench; do
  if [[ -x $bench ]]; then
    echo "cross-build: $bench under qemu-user"
    "$qemu" -L "$sysroot" "$bench" --quick
  fi
done
cmake --build "$build" -j "$(nproc)"
echo "cross-build: everything built for $arch"
