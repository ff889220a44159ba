#!/usr/bin/env bash
# Counts the protocol's own work per echo, without the kernel, the other process or the VM's
# noise: runs `sturnus-bench sansio` under cachegrind twice (R1 and R2 rounds) and prints the
# difference per echo (both sides together): instructions, simulated first-level misses and
# last-level (32 MiB) misses. The same build gives the same figures, so one run of each of two
# builds compares them. Needs valgrind. N = 40,000 clients keeps their state far past 32 MiB.
# Prefetching is off: cachegrind does not model it (a prefetch neither hits nor misses), so
# these are the protocol's own accesses; `sturnus-bench sansio --prefetch both` times it.
#
#   benches/sansio-cachegrind.sh target/release/sturnus-bench 40000 2 4
set -euo pipefail
bin=$1 clients=${2:-40000} r1=${3:-2} r2=${4:-4}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for rounds in "$r1" "$r2"; do
    valgrind --tool=cachegrind --cache-sim=yes --D1=32768,8,64 --LL=33554432,16,64 \
        --cachegrind-out-file="$dir/$rounds.out" \
        "$bin" sansio --clients "$clients" --rounds "$rounds" --prefetch off >/dev/null 2>&1
done
summary() { grep '^summary:' "$1" | cut -d' ' -f2-; }
read -r -a a < <(summary "$dir/$r1.out")
read -r -a b < <(summary "$dir/$r2.out")
# Events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw
echoes=$(( (r2 - r1) * clients ))
awk -v e="$echoes" -v ir=$((b[0] - a[0])) -v d1=$((b[4] - a[4] + b[7] - a[7])) \
    -v llr=$((b[5] - a[5])) -v llw=$((b[8] - a[8])) -v n="$clients" 'BEGIN {
    printf "sansio under cachegrind, %d clients, %d echoes: per echo %.0f instructions, %.1f D1 misses, %.1f LL read misses, %.1f LL write misses\n", n, e, ir / e, d1 / e, llr / e, llw / e
}'
