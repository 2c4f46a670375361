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
echo "demo: building berthd, berthctl and berth-oci"
cmake --build "$build" -j "$(nproc)" --target berthd berthctl berth-oci >/dev/null

berthd=$build/agent/berthd
berthctl=$build/tools/berthctl/berthctl
berthoci=$build/tools/berth-oci/berth-oci
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  # Containers outlive berthd by design (they are adopted at its next start): the demo
  # removes the ones it left behind when it was interrupted.
  for root in $(find "$work" -type d -name runtime -path '*/smm/*' 2>/dev/null); do
    for id in $(runc --root "$root" list -q 2>/dev/null); do runc --root "$root" delete --force "$id" 2>/dev/null || true; done
  done
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
set_tcp_nodelay true
allow_anonymous true
log_dest stdout
CONF
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
pids+=($!)
wait_port "$port"
echo "demo: mosquitto listening on 127.0.0.1:$port (pid ${pids[-1]})"

# 2. The agent, with the example configuration pointed at that broker.
mkdir -p "$work/shared"
# Apps run as the ExecEnv's mapped root (host uid 2^30 for ExecEnv.1, docs/security.md),
# not as host root: the directory they write through a rw HostObject is handed to it.
chown 1073741824:1073741824 "$work/shared"
sed -e "s/^Device.MQTT.Client.1.BrokerPort .*/Device.MQTT.Client.1.BrokerPort \"$port\"/" \
    -e "s|^\(Device.SoftwareModules.ExecEnv.1.X_BERTH_HostObjectPrefixes\) .*|\1 \"$work/shared\"|" \
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

# 4. Software modules: an application image, installed, run, stopped and removed.
app=$work/app
mkdir -p "$app/rootfs/bin" "$app/rootfs/app" "$app/rootfs/data" "$work/www"
cp /bin/busybox "$app/rootfs/bin/busybox"
for tool in sh date sleep cat echo; do ln -sf busybox "$app/rootfs/bin/$tool"; done
cat > "$app/rootfs/app/run.sh" <<'APP'
#!/bin/sh
# hello-berth: writes a heartbeat every second into the directory the gateway gives it.
trap 'exit 0' TERM
n=0
while true; do
  n=$((n + 1))
  echo "hello from a berth container, beat $n at $(date -u +%H:%M:%S)" > /data/heartbeat
  sleep 1
done
APP
chmod 755 "$app/rootfs/app/run.sh"
"$berthoci" build "$app/rootfs" "$work/www/hello-berth.tar" --gzip --cmd /bin/sh --cmd /app/run.sh \
  --name hello-berth --version 1.0.0 --vendor apps.example.net --description "A heartbeat writer" >/dev/null
web=$(free_port)
(cd "$work/www" && exec python3 -m http.server --bind 127.0.0.1 "$web" > "$work/http.log" 2>&1) &
pids+=($!)
wait_port "$web"
url=http://127.0.0.1:$web/hello-berth.tar
echo "demo: built the application image hello-berth 1.0.0, served at $url"

ctl --id self::berthctl-watch --topic usp/controller/berthctl-watch watch --type Event \
  'Device.SoftwareModules.DUStateChange!' --timeout 120 > "$work/du-events.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^watching' "$work/du-events.out" 2>/dev/null && break; sleep 0.1; done

step "Install the application into the 'apps' execution environment" operate 'Device.SoftwareModules.InstallDU()' URL=$url ... --wait
ctl --timeout 120 operate 'Device.SoftwareModules.InstallDU()' "URL=$url" \
  ExecutionEnvRef=Device.SoftwareModules.ExecEnv.1. \
  "HostObject.1.Source=$work/shared" HostObject.1.Destination=/data HostObject.1.Options=rw --wait
for _ in $(seq 100); do grep -q 'DUStateChange' "$work/du-events.out" 2>/dev/null && break; sleep 0.1; done
echo "-- the watcher received:"
grep -q 'DUStateChange' "$work/du-events.out" && sed -n '/event Device.SoftwareModules.DUStateChange!/,$p' "$work/du-events.out" \
  || echo "(no DUStateChange! arrived)"

step "The deployment unit and its execution unit" get Device.SoftwareModules.DeploymentUnit.1. ...
ctl get Device.SoftwareModules.DeploymentUnit.1.Name Device.SoftwareModules.DeploymentUnit.1.Version \
  Device.SoftwareModules.DeploymentUnit.1.Vendor Device.SoftwareModules.DeploymentUnit.1.UUID \
  Device.SoftwareModules.DeploymentUnit.1.Status Device.SoftwareModules.ExecutionUnit.1.Status

step "Start it" operate 'Device.SoftwareModules.ExecutionUnit.1.SetRequestedState()' RequestedState=Active
ctl operate 'Device.SoftwareModules.ExecutionUnit.1.SetRequestedState()' RequestedState=Active
for _ in $(seq 100); do
  ctl get Device.SoftwareModules.ExecutionUnit.1.Status | grep -q '= Active' && [[ -s $work/shared/heartbeat ]] && break
  sleep 0.1
done
step "Its status and memory use" get Device.SoftwareModules.ExecutionUnit.1.Status ...MemoryInUse
ctl get Device.SoftwareModules.ExecutionUnit.1.Status Device.SoftwareModules.ExecutionUnit.1.MemoryInUse \
  Device.SoftwareModules.ExecutionUnit.1.ExecutionFaultCode
echo "-- what the container wrote into $work/shared/heartbeat:"
cat "$work/shared/heartbeat" 2>/dev/null || echo "(nothing yet)"

step "Stop it" operate 'Device.SoftwareModules.ExecutionUnit.1.SetRequestedState()' RequestedState=Idle
ctl operate 'Device.SoftwareModules.ExecutionUnit.1.SetRequestedState()' RequestedState=Idle
for _ in $(seq 100); do ctl get Device.SoftwareModules.ExecutionUnit.1.Status | grep -q '= Idle' && break; sleep 0.1; done
ctl get Device.SoftwareModules.ExecutionUnit.1.Status

step "Uninstall it" operate 'Device.SoftwareModules.DeploymentUnit.1.Uninstall()' --wait
ctl --timeout 60 operate 'Device.SoftwareModules.DeploymentUnit.1.Uninstall()' --wait
step "Nothing is left" instances Device.SoftwareModules.DeploymentUnit. Device.SoftwareModules.ExecutionUnit.
ctl instances Device.SoftwareModules.DeploymentUnit. Device.SoftwareModules.ExecutionUnit.

printf '\ndemo: done. berthd log:\n'
tail -n 20 "$work/berthd.log"
