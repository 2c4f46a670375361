#!/usr/bin/env bash
# Installs every Debian package berth's build and tests need (only what is missing)
# and configures the build directory. Safe to run again: it does nothing twice.
#
#   tools/setup.sh                 # packages + configure ./build
#   BUILD_DIR=out tools/setup.sh   # another build directory
#   BERTH_CMAKE_ARGS="-DBERTH_SANITIZE=ON" tools/setup.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$here/build}

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates
  # libraries
  libprotobuf-dev protobuf-compiler libsqlite3-dev libssl-dev openssl
  libpaho-mqttpp-dev libpaho-mqtt-dev libmosquitto-dev libwebsockets-dev libcurl4-openssl-dev
  libarchive-dev libcgroup-dev nlohmann-json3-dev libcli11-dev zlib1g-dev
  # tests
  catch2 mosquitto mosquitto-clients runc crun skopeo umoci busybox-static
  docker-registry apache2-utils
  python3 nodejs npm procps iproute2 util-linux
  universal-ctags  # tools/long-functions.py (the lint label)
  activemq default-jre-headless
)

missing=()
for p in "${packages[@]}"; do
  # nodejs/npm: a newer Node already on PATH (not from Debian) serves as well.
  if [[ $p == nodejs || $p == npm ]] && command -v "${p/nodejs/node}" >/dev/null 2>&1; then
    continue
  fi
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#packages[@]} packages present"
fi

cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-RelWithDebInfo})
if [[ ${CI:-} == true ]]; then cmake_args+=(-DBERTH_WERROR=ON); fi
# shellcheck disable=SC2206
cmake_args+=(${BERTH_CMAKE_ARGS:-})
cmake -S "$here" -B "$build_dir" "${cmake_args[@]}" >/dev/null
echo "setup: build configured in $build_dir"
