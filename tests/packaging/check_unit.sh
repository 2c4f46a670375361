#!/bin/sh
# systemd-analyze verify on packaging/systemd/berthd.service, with ExecStart pointed at the
# built berthd: any complaint (unknown key, bad value, missing program) fails.
#   check_unit.sh <berthd.service> <built berthd>
set -eu
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s#/usr/sbin/berthd#$2#" "$1" > "$dir/berthd.service"
grep -q '^Type=notify$' "$dir/berthd.service" || { echo "berthd.service is not Type=notify"; exit 1; }
grep -q '^WatchdogSec=' "$dir/berthd.service" || { echo "berthd.service has no WatchdogSec="; exit 1; }
out=$(systemd-analyze verify --man=no "$dir/berthd.service" 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then echo "$out"; exit 1; fi
echo "berthd.service verified"
