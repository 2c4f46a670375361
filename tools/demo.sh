#!/usr/bin/env bash
# The main job, on loopback: starts an MQTT broker, the berth agent (berthd) with the
# example configuration, and drives the agent with berthctl as the operator's
# controller would. Installs what it needs, builds what it runs, and stops every
# process it started when it ends (or is interrupted).
#
#   tools/demo.sh            # run the walk-through
#   KEEP=1 tools/demo.sh     # keep the work directory (logs, database) afterwards
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$here/build}
export BUILD_DIR=$build

"$here/tools/setup.sh"
echo "demo: building berthd and berthctl"
cmake --build "$build" -j "$(nproc)" --target berthd berthctl >/dev/null

berthd=$build/agent/berthd
berthctl=$build/tools/berthctl/berthctl
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n ${KEEP:-} ]]; then echo "demo: work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "demo: nothing listens on port $1" >&2
  return 1
}
step() { printf '\n\033[1m== %s\033[0m\n$ berthctl %s\n' "$1" "${*:2}"; }
ctl() { "$berthctl" --mqtt "127.0.0.1:$port" "$@"; }

# 1. A broker on a free loopback port.
port=$(free_port)
cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
log_dest stdout
CONF
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
pids+=($!)
wait_port "$port"
echo "demo: mosquitto listening on 127.0.0.1:$port (pid ${pids[-1]})"

# 2. The agent, with the example configuration pointed at that broker.
sed "s/^Device.MQTT.Client.1.BrokerPort .*/Device.MQTT.Client.1.BrokerPort \"$port\"/" \
  "$here/examples/berth.conf" > "$work/berth.conf"
"$berthd" --config "$work/berth.conf" --db "$work/db/berth.db" --log-level info > "$work/berthd.log" 2>&1 &
pids+=($!)
berthd_pid=${pids[-1]}
for _ in $(seq 100); do
  if ctl --timeout 1 proto > /dev/null 2>&1; then break; fi
  if ! kill -0 "$berthd_pid" 2>/dev/null; then echo "demo: berthd exited:" >&2; cat "$work/berthd.log" >&2; exit 1; fi
done
echo "demo: berthd running (pid $berthd_pid), log in $work/berthd.log"

# 3. The operator's controller at work.
step "Which USP versions does the agent speak?" proto
ctl proto
step "Read the gateway's identity" get Device.DeviceInfo.
ctl get Device.DeviceInfo.
step "Subscribe to changes of the gateway's friendly name" add Device.LocalAgent.Subscription. ...
ctl add Device.LocalAgent.Subscription. ID=demo-friendly-name Enable=true NotifType=ValueChange \
  ReferenceList=Device.DeviceInfo.FriendlyName
step "List the subscriptions" instances Device.LocalAgent.Subscription.
ctl instances Device.LocalAgent.Subscription.
step "Watch the name in the background (a second controller session)" watch --type ValueChange Device.DeviceInfo.FriendlyName
ctl --id self::berthctl-watch --topic usp/controller/berthctl-watch watch --type ValueChange \
  Device.DeviceInfo.FriendlyName --timeout 20 > "$work/watch.out" 2>&1 &
pids+=($!)
watch_pid=${pids[-1]}
for _ in $(seq 100); do grep -q '^watching' "$work/watch.out" 2>/dev/null && break; sleep 0.1; done
cat "$work/watch.out"
step "Rename the gateway" set 'Device.DeviceInfo.FriendlyName=Living-room gateway'
ctl set 'Device.DeviceInfo.FriendlyName=Living-room gateway'
for _ in $(seq 100); do grep -q 'value change' "$work/watch.out" 2>/dev/null && break; sleep 0.1; done
echo "-- the watcher received:"
grep 'value change' "$work/watch.out" || echo "(no notification arrived)"
kill "$watch_pid" 2>/dev/null || true
step "Read the name back" get Device.DeviceInfo.FriendlyName
ctl get Device.DeviceInfo.FriendlyName
step "A path the agent does not serve gets a clear error" get Device.NoSuchThing.
ctl get Device.NoSuchThing. || true

printf '\ndemo: done. berthd log:\n'
tail -n 20 "$work/berthd.log"
