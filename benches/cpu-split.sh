#!/usr/bin/env bash
# Runs the `clients` workload of the given sturnus-bench binary and prints the user and system
# CPU of the client process and of the Sturnus server process over a 10-s window starting 10 s
# in (from /proc/PID/stat), then the client side's summary line. For A/B comparisons of two
# builds: alternate them, same machine, same load.
#
#   benches/cpu-split.sh target/release/sturnus-bench 60000 22
set -euo pipefail
bin=$1 clients=$2 duration=${3:-22}
log=$(mktemp)
"$bin" local --workload clients --clients "$clients" --rate 1 --duration-s "$duration" \
    >/dev/null 2>"$log" &
sleep 10
client=$(pgrep -f " local --workload clients" | head -1)
server=$(pgrep -f " server --bind" | head -1)
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
read -r cu0 cs0 < <(ticks "$client")
read -r su0 ss0 < <(ticks "$server")
sleep 10
read -r cu1 cs1 < <(ticks "$client")
read -r su1 ss1 < <(ticks "$server")
hz=$(getconf CLK_TCK)
pct() { awk -v d="$1" -v hz="$hz" 'BEGIN { printf "%.1f", d * 100 / (10 * hz) }'; }
echo "client user $(pct $((cu1 - cu0))) % sys $(pct $((cs1 - cs0))) % | server user $(pct $((su1 - su0))) % sys $(pct $((ss1 - ss0))) %"
wait
grep -o "clients: [^·]*" "$log" | head -1
rm -f "$log"
