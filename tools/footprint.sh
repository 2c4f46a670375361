#!/usr/bin/env bash
# Builds berthd in each footprint profile and prints a table: stripped size, and idle
# VmRSS / RssAnon / threads some seconds after start, connected to a local mosquitto on
# a free loopback port.
#
#   tools/footprint.sh                       # every profile
#   tools/footprint.sh gateway gateway-mqtt  # some of them
#   IDLE_SECONDS=10 KEEP=1 tools/footprint.sh
#   NO_BUILD=1 tools/footprint.sh             # measure what is built, build nothing
#   MAPS=1 tools/footprint.sh gateway        # also where the resident memory is: Rss and
#                                             # Anonymous per mapped file, heap, stacks
#   tools/footprint.sh --arm64               # stripped sizes of gateway, gateway-mqtt for arm64
#   BERTHD_ENV="LD_PRELOAD=libcurl.so.4:libarchive.so.13" tools/footprint.sh gateway
#                                             # extra environment for berthd (here: what
#                                             # it maps without BERTH_LAZY_LIBS)
#
# Profiles:
#   gateway         CMake preset "gateway": MinSizeRel, LTO, section GC, every MTP and
#                   SoftwareModules (one ExecEnv on runc configured)
#   gateway-mqtt    CMake preset "gateway-mqtt": the same with MQTT only, no SoftwareModules
#   relwithdebinfo  the development build (RelWithDebInfo, everything): $BUILD_DIR or ./build
#
# Settings comparable to obuspa's idle figures: one MQTT 5 client connected to the
# broker, one agent MTP, two controllers, a fresh database, log level info to a file.
# Figures are read from /proc/<pid>/status; thread names from /proc/<pid>/task/*/comm.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# --arm64: the gateway presets cross-built for arm64, stripped sizes only (memory of an
# arm64 berthd under qemu-user would be the emulator's); tools/cross-build.sh does it.
if [[ ${1:-} == --arm64 ]]; then exec "$here/tools/cross-build.sh" arm64 --footprint "${@:2}"; fi
idle=${IDLE_SECONDS:-10}
profiles=("$@")
((${#profiles[@]})) || profiles=(gateway gateway-mqtt relwithdebinfo)

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi

work=$(mktemp -d /tmp/berth-footprint.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n ${KEEP:-} ]]; then echo "footprint: work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "footprint: nothing listens on port $1" >&2
  return 1
}

build_profile() {  # <profile> -> prints the build directory
  local p=$1 dir
  case $p in
    gateway|gateway-mqtt)
      dir=$here/build-$p
      if [[ -z ${NO_BUILD:-} ]]; then cmake --preset "$p" -S "$here" "${launcher[@]}" >/dev/null; fi ;;
    relwithdebinfo)
      # The development build (tools/setup.sh) when there is one: berthd is the same with
      # or without the tests.
      dir=${BUILD_DIR:-$here/build}
      if [[ ! -f $dir/CMakeCache.txt ]]; then
        cmake -S "$here" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBERTH_BUILD_TESTS=OFF \
          "${launcher[@]}" >/dev/null
      fi ;;
    *) echo "footprint: unknown profile $p" >&2; return 2 ;;
  esac
  if [[ -z ${NO_BUILD:-} ]]; then cmake --build "$dir" -j "$(nproc)" --target berthd >&2; fi
  echo "$dir"
}

# One broker for every profile.
port=$(free_port)
cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
log_dest stdout
log_type all
CONF
mosquitto -c "$work/mosquitto.conf" >> "$work/mosquitto.log" 2>&1 &
pids+=($!)
wait_port "$port"

unit_env=$(sed -n 's/^Environment=//p' "$here/packaging/systemd/berthd.service" | tr '\n' ' ')
rows=()
for p in "${profiles[@]}"; do
  dir=$(build_profile "$p")
  mkdir -p "$work/$p"
  strip -o "$work/$p/berthd" "$dir/agent/berthd"
  size=$(stat -c %s "$work/$p/berthd")
  oci=$(grep -E '^BERTH_WITH_OCI:BOOL=' "$dir/CMakeCache.txt" | cut -d= -f2)
  mtps=""
  for m in MQTT STOMP WEBSOCKET; do
    if [[ $(grep -E "^BERTH_WITH_$m:BOOL=" "$dir/CMakeCache.txt" | cut -d= -f2) == ON ]]; then mtps+="$m "; fi
  done
  conf=$work/$p/berth.conf
  sed -e "s/BrokerPort \"1883\"/BrokerPort \"$port\"/" \
      -e "s#/var/lib/berth/shared#$work/$p/shared#" \
      -e "s#\"/berth/apps\"#\"/berth-footprint-$$-$p\"#" "$here/examples/berth.conf" > "$conf"
  [[ $oci == ON ]] || sed -i '/^Device\.SoftwareModules\./d' "$conf"
  # The environment the systemd unit gives berthd (as deployed).
  env $unit_env ${BERTHD_ENV:-} "$work/$p/berthd" -c "$conf" -d "$work/$p/berth.db" --state-dir "$work/$p/state" \
    > "$work/$p/berthd.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  sleep "$idle"
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "footprint: berthd ($p) exited; its log:" >&2
    cat "$work/$p/berthd.log" >&2
    exit 1
  fi
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status")
  file=$(awk '/^RssFile:/ {print $2}' "/proc/$pid/status")
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")
  pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
  names=$(cat /proc/"$pid"/task/*/comm | sort | uniq -c | awk '{printf "%s%s", (NR>1?",":""), ($1>1? $2"x"$1 : $2)}')
  if [[ -n ${MAPS:-} ]]; then
    echo "footprint: $p resident memory per mapping (KB Rss, KB Anonymous):" >&2
    awk '/^[0-9a-f]+-[0-9a-f]+ / { name = $6; if (name == "") name = "[anon]" }
         /^Rss:/ { rss[name] += $2 } /^Anonymous:/ { anon[name] += $2 }
         END { for (n in rss) if (rss[n] > 0) printf "  %6d %6d  %s\n", rss[n], anon[n], n }' \
      "/proc/$pid/smaps" | sort -rn >&2
  fi
  connected=no
  if grep -q "connected to mqtt://" "$work/$p/berthd.log"; then connected=yes; fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  # The ExecEnv's cgroup parent berthd made (empty once it has stopped).
  for d in /sys/fs/cgroup/*/"berth-footprint-$$-$p" /sys/fs/cgroup/"berth-footprint-$$-$p"; do
    [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # The next profile's client uses the same ID; start it on a clean broker log.
  : > "$work/mosquitto.log"
  rows+=("$(printf '| %-14s | %-22s | %-3s | %7.0f KB | %7.1f MB | %7.1f MB | %7.1f MB | %7.1f MB | %2d | %-4s | %s |' \
    "$p" "${mtps% }" "$oci" "$(echo "$size / 1024" | bc -l)" "$(echo "$rss / 1024" | bc -l)" \
    "$(echo "$anon / 1024" | bc -l)" "$(echo "$file / 1024" | bc -l)" "$(echo "$pss / 1024" | bc -l)" \
    "$threads" "$connected" "$names")")
done

echo
echo "berthd footprint on $(uname -m), idle ${idle} s after start against mosquitto; environment: ${unit_env:-none} ${BERTHD_ENV:-}"
echo "| profile        | MTPs                   | SMM | stripped   | VmRSS      | RssAnon    | RssFile    | Pss        | th | MQTT | thread names |"
echo "|----------------|------------------------|-----|------------|------------|------------|------------|------------|----|------|--------------|"
printf '%s\n' "${rows[@]}"
