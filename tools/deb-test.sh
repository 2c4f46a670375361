#!/usr/bin/env bash
# Builds the Debian package (unless given one), installs it on this machine, starts the
# installed berthd from the installed factory configuration against a test mosquitto on
# a free loopback port, checks it answers a Get from the installed berthctl, then purges
# the package and checks nothing it installed or created is left.
#
#   tools/deb-test.sh                      # dpkg-buildpackage -b -us -uc, then the test
#   tools/deb-test.sh build-deb/berth_0.1.0_amd64.deb
#
# Only the broker port differs from the installed configuration (it names 1883): the
# test copies /etc/berth/berth.conf with the free port put in. The data model database
# goes to a temporary directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deb=${1:-}
if [[ -z $deb ]]; then
  # Built from a copy of the tree (tracked and new files, not ignored ones) in
  # build-deb/src, so the .deb and dpkg-buildpackage's other output land in build-deb/
  # and not beside the tree. The fixed path lets ccache hit from one run to the next.
  out=$here/build-deb
  rm -rf "$out/src" "$out"/berth_* "$out"/berth-dbgsym_*
  mkdir -p "$out/src"
  (cd "$here" && git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$out/src")
  if command -v ccache >/dev/null && [[ -z ${BERTH_DEB_CMAKE_ARGS:-} ]]; then
    export BERTH_DEB_CMAKE_ARGS="-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache"
  fi
  start=$(date +%s)
  (cd "$out/src" && dpkg-buildpackage -b -us -uc) > "$out/build.log" 2>&1 || {
    tail -50 "$out/build.log" >&2; echo "deb-test: FAIL: dpkg-buildpackage (log: $out/build.log)" >&2; exit 1; }
  echo "deb-test: dpkg-buildpackage took $(($(date +%s) - start)) s"
  deb=$(ls -t "$out"/berth_*_"$(dpkg --print-architecture)".deb | head -1)
fi
deb=$(readlink -f "$deb")
echo "deb-test: testing $deb"

if dpkg-query -W -f='${Status}' berth 2>/dev/null | grep -q "install ok installed"; then
  echo "deb-test: a berth package is already installed; not touching it" >&2
  exit 2
fi
for d in /etc/berth /var/lib/berth /run/berth; do
  if [[ -e $d ]]; then echo "deb-test: $d exists before the test; refusing to run" >&2; exit 2; fi
done

# What must be the same after the purge: users, groups, systemd's enablement state.
snapshot() {
  getent passwd | cut -d: -f1 | sort
  getent group | cut -d: -f1 | sort
  find /etc/systemd /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
    -name '*berth*' 2>/dev/null | sort || true  # some of the directories may not exist
}
before=$(snapshot)

work=$(mktemp -d /tmp/berth-deb-test.XXXXXX)
chmod 755 "$work"
pids=()
installed=0
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((installed)); then dpkg --purge berth >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
fail() { echo "deb-test: FAIL: $*" >&2; exit 1; }

# 1. Install (dependencies are what the build machine already has).
apt-get install -y -q --no-install-recommends "$deb" >"$work/install.log" 2>&1 || {
  cat "$work/install.log" >&2; fail "install"; }
installed=1
files=$(dpkg -L berth)
for f in /usr/sbin/berthd /usr/bin/berthctl /etc/berth/berth.conf /lib/systemd/system/berthd.service \
         /usr/share/man/man8/berthd.8.gz; do
  grep -qx "$f" <<<"$files" || fail "$f is not in the package"
  [[ -e $f ]] || fail "$f is not on disk"
done
grep -qx /etc/berth/berth.conf < <(dpkg-query -W -f='${Conffiles}\n' berth | awk '{print $1}') ||
  fail "/etc/berth/berth.conf is not a conffile"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify /lib/systemd/system/berthd.service 2>"$work/verify.log" || {
    cat "$work/verify.log" >&2; fail "systemd-analyze verify berthd.service"; }
fi
man -l /usr/share/man/man8/berthd.8.gz 2>/dev/null | grep -q -- "--config" || fail "berthd(8) lacks --config"

# 2. A broker, and the installed berthd from the installed configuration.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
pids+=($!)
sed -e "s/BrokerPort \"1883\"/BrokerPort \"$port\"/" \
    -e "s#\"/berth/apps\"#\"/berth-deb-test-$$\"#" /etc/berth/berth.conf > "$work/berth.conf"
/usr/sbin/berthd --config "$work/berth.conf" --db "$work/berth.db" --state-dir "$work/state" \
  > "$work/berthd.log" 2>&1 &
pids+=($!)
berthd_pid=$!

# 3. It answers: the installed controller reads the agent's software version.
answer=""
for _ in $(seq 50); do
  if answer=$(/usr/bin/berthctl --mqtt "127.0.0.1:$port" --timeout 2 get Device.DeviceInfo.SoftwareVersion 2>&1) &&
     grep -q "0.1.0" <<<"$answer"; then break; fi
  answer=""
  sleep 0.2
done
[[ -n $answer ]] || { cat "$work/berthd.log" >&2; fail "berthd does not answer over MQTT"; }
echo "deb-test: installed berthd answers: $(tr '\n' ' ' <<<"$answer")"
# Built with BERTH_LAZY_LIBS (no DT_NEEDED for them), berthd loads libcurl and
# libarchive on the first image pull only.
if ! objdump -p /usr/sbin/berthd | grep -qE 'NEEDED +lib(curl|archive)\.so'; then
  if grep -qE '/lib(curl|archive)\.so' "/proc/$berthd_pid/maps"; then
    fail "the idle berthd maps libcurl or libarchive"
  fi
  echo "deb-test: the idle berthd maps neither libcurl nor libarchive"
fi
echo "deb-test: idle VmRSS $(awk '/^VmRSS/ {print $2, $3}' "/proc/$berthd_pid/status")"
kill "$berthd_pid"
wait "$berthd_pid" || fail "berthd did not stop cleanly on SIGTERM"

# 4. Purge: every file of the package and the directories it made are gone.
dpkg --purge berth > "$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; fail "purge"; }
installed=0
left=()
while read -r f; do
  case $f in /|/etc|/usr|/usr/*bin|/usr/share|/usr/share/doc|/usr/share/man|/usr/share/man/man?|/lib|/lib/systemd|/lib/systemd/system|/.) continue ;; esac
  if [[ -e $f && ! -d $f ]]; then left+=("$f"); fi
  if [[ -d $f ]] && [[ $f == */berth* ]]; then left+=("$f"); fi
done <<<"$files"
for d in /etc/berth /var/lib/berth /run/berth; do [[ -e $d ]] && left+=("$d"); done
((${#left[@]} == 0)) || fail "left behind after purge: ${left[*]}"
after=$(snapshot)
[[ $before == "$after" ]] || fail "users, groups or unit links differ after purge: $(diff <(echo "$before") <(echo "$after") | tr '\n' ' ')"
if dpkg-query -W -f='${Status}' berth 2>/dev/null | grep -qE ' (installed|config-files|unpacked|half-[a-z]+)$'; then
  fail "dpkg still has the package: $(dpkg-query -W -f='${Status}' berth)"
fi
echo "deb-test: PASS (installed, answered, purged without leftovers)"
