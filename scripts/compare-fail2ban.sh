#!/usr/bin/env bash
# Throughput and memory of `vigil scan` against `fail2ban-regex FILE sshd` on
# the same generated auth.log, measured back to back in one run (the machines
# are shared and noisy: only the ratio within one run means anything).
#
#   scripts/compare-fail2ban.sh [LINES] [ROUNDS]
#
# Needs fail2ban (apt-get install fail2ban) and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-1000000}
rounds=${2:-3}
command -v fail2ban-regex >/dev/null || { echo "fail2ban-regex not found: apt-get install fail2ban" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found: apt-get install time" >&2; exit 1; }

cargo build --release --quiet --bin vigil --example gen_authlog
log=$(mktemp /tmp/vigil-authlog.XXXXXX)
trap 'rm -f "$log" "$log".*' EXIT
target/release/examples/gen_authlog "$lines" > "$log"
echo "file: $lines lines, $(du -h "$log" | cut -f1)"

measure() { # label, command...
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o "$log.time" "$@" > /dev/null 2> "$log.err" || { cat "$log.err" >&2; exit 1; }
    read -r secs rss < "$log.time"
    echo "$label $secs $rss"
}

# Each round: fail2ban once, then vigil five times (its run is short, so one
# noisy moment would swing the ratio); the ratio uses vigil's median.
for r in $(seq "$rounds"); do
    f=$(measure fail2ban fail2ban-regex "$log" sshd)
    read -r _ fs fm <<< "$f"
    vs_all=(); vm=0
    for _ in 1 2 3 4 5; do
        v=$(measure vigil target/release/vigil scan "$log")
        read -r _ s m <<< "$v"
        vs_all+=("$s"); (( m > vm )) && vm=$m
    done
    sorted=$(printf '%s\n' "${vs_all[@]}" | sort -n | tr '\n' ' ')
    vs=$(printf '%s\n' "${vs_all[@]}" | sort -n | sed -n 3p)
    awk -v r="$r" -v fs="$fs" -v fm="$fm" -v vs="$vs" -v vm="$vm" -v all="$sorted" 'BEGIN {
        printf "round %d: fail2ban-regex %.2f s %d KiB RSS | vigil scan median %.3f s (runs: %s) max %d KiB RSS | speed %.1fx, RSS %.3f of fail2ban\n",
            r, fs, fm, vs, all, vm, fs / vs, vm / fm }'
done
