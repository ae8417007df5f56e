#!/usr/bin/env bash
# Key-press latency of the console while the gateway is under load, seen
# from outside: the console runs in tmux, examples/load_gateway posts signed
# events, and this script switches panes with tmux send-keys and polls
# capture-pane until the other pane is on screen. It also prints the
# console's own measure (input seen → frame written), which leaves out tmux.
#
# usage: scripts/console-latency.sh [CONCURRENCY] [PRESSES]
# Needs tmux and a release build (cargo build --release --examples).
set -euo pipefail
cd "$(dirname "$0")/.."
conc=${1:-16}
presses=${2:-40}
bin=target/release/vigil
load=target/release/examples/load_gateway
dir=$(mktemp -d)
sock=vigil-latency-$$
trap 'tmux -L $sock kill-server 2>/dev/null || true; kill $lpid 2>/dev/null || true; rm -rf "$dir"' EXIT
tmux -L $sock new-session -d -s c -x 120 -y 40 \
    "env ARES_SHARED_SECRET=bench SEC_RATE_LIMIT_PER_MIN=100000000 $bin console --listen 127.0.0.1:18765 --data-dir $dir 2>$dir/console.err"
sleep 1
$load --addr 127.0.0.1:18765 --secret bench --concurrency "$conc" --seconds 60 > "$dir/load.txt" &
lpid=$!
sleep 3
lat=()
for i in $(seq 1 "$presses"); do
    if (( i % 2 )); then key=2; want="Alerts "; else key=1; want="Live events"; fi
    start=$(date +%s%N)
    tmux -L $sock send-keys -t c "$key"
    until tmux -L $sock capture-pane -p -t c | grep -q "$want"; do sleep 0.002; done
    end=$(date +%s%N)
    lat+=($(( (end - start) / 1000 )))
    sleep 0.2
done
rate=$(tmux -L $sock capture-pane -p -t c | grep -o 'events [0-9]*  [0-9]*/s' | head -1)
kill $lpid 2>/dev/null || true
wait $lpid 2>/dev/null || true
# q: the console prints how fast it answered input, measured inside it.
tmux -L $sock send-keys -t c q
for _ in $(seq 50); do grep -q "inputs answered" "$dir/console.err" 2>/dev/null && break; sleep 0.1; done
echo "inside the console: $(grep -o '[0-9]* inputs answered.*' "$dir/console.err" || echo 'no summary')"
printf '%s\n' "${lat[@]}" | sort -n | awk -v r="$rate" '{a[NR]=$1} END {
    printf "key presses: %d, latency ms: median %.1f, p90 %.1f, max %.1f (screen said: %s)\n",
        NR, a[int(NR/2)+1]/1000, a[int(NR*0.9)]/1000, a[NR]/1000, r }'
cat "$dir/load.txt"
