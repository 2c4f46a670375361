#!/bin/sh
# Instructions berthd spends per request on each MTP, counted by callgrind.
#
#   tools/mtp-bench/callgrind.sh [-t "MQTT STOMP WebSocket"] [-a N1] [-b N2] BENCH BERTHD [CONFIG]
#
# BENCH is a berth-mtp-bench that has --only; BERTHD the agent to measure (another
# build's berthd works: the bench is only the controller side); CONFIG the base
# configuration that berthd understands (default: the bench's own). For each transport
# it runs the bench twice with berthd under callgrind, N1 and N2 requests (16 in
# flight, after the bench's 50-request warm-up), and prints
#     (instructions with N2 - instructions with N1) / (N2 - N1)
# so start-up, warm-up and shutdown cancel out. All threads of berthd are counted
# (the MQTT library's included). Everything the bench starts it stops by PID.
set -eu
transports="MQTT STOMP"
n1=200
n2=1200
while getopts t:a:b: opt; do
    case $opt in
        t) transports=$OPTARG ;;
        a) n1=$OPTARG ;;
        b) n2=$OPTARG ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
bench=${1:?usage: callgrind.sh [-t TRANSPORTS] [-a N1] [-b N2] BENCH BERTHD [CONFIG]}
berthd=${2:?usage: callgrind.sh [-t TRANSPORTS] [-a N1] [-b N2] BENCH BERTHD [CONFIG]}
config=${3:-}
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 1; }

work=$(mktemp -d /tmp/berth-mtp-callgrind-XXXXXX)
trap 'rm -rf "$work"' EXIT
cat > "$work/berthd" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file="\$CG_OUT" "$berthd" "\$@"
EOF
chmod +x "$work/berthd"

# Total instructions of one callgrind output file (all threads).
total() { sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$1" | head -n 1; }

run() {  # transport requests -> prints berthd's instructions
    out="$work/cg.$1.$2"
    if [ -n "$config" ]; then
        CG_OUT=$out "$bench" --berthd "$work/berthd" --config "$config" --only "$1" --sequential 0 -n "$2" \
            --inflight 16 --agent-start-timeout 120 > "$work/bench.log" 2>&1
    else
        CG_OUT=$out "$bench" --berthd "$work/berthd" --only "$1" --sequential 0 -n "$2" \
            --inflight 16 --agent-start-timeout 120 > "$work/bench.log" 2>&1
    fi || { cat "$work/bench.log" >&2; exit 1; }
    [ -s "$out" ] || { echo "callgrind.sh: no callgrind output (berthd killed?)" >&2; exit 1; }
    total "$out"
}

echo "berthd: $berthd"
echo "| transport | Ir with $n1 requests | Ir with $n2 requests | Ir per request |"
echo "|---|---:|---:|---:|"
for t in $transports; do
    a=$(run "$t" "$n1")
    b=$(run "$t" "$n2")
    echo "| $t | $a | $b | $(( (b - a) / (n2 - n1) )) |"
done
