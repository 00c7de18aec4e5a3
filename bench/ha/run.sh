#!/usr/bin/env bash
# HA recovery time: a host of a 3-host lab loses power, and the time until
# its HA VM runs on another host with its guest printing on the console
# there. Runs the cluster test TestHARestartAfterHostDeath (a fresh lab
# each time) N times and prints the median and the worst, beside what
# vSphere HA (15 s to declare a host dead, before any restart) and Proxmox
# VE's ha-manager (about 2 minutes: lock timeout plus fencing) take.
#   bench/ha/run.sh [N [TTL]]   (default 10 runs with the agents' default host
#   lease; TTL e.g. 10s for the HA tests' lab lease; needs root for the bridge)
# The KVM is the lab's: nested kvm_amd under TCG where the machine has no
# /dev/kvm, so guest boots are slow; the detection part (lease TTL) is not.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-10}
ttl=${2:-0}
make -s build guest lab >/dev/null
export GOVISOR_CACHE=$PWD/.cache GOVISOR_TEST_BINDIR=$PWD/.cache/bin/ CI=true CGO_ENABLED=0 GOVISOR_LAB_LEASE_TTL=$ttl
lease=$([[ $ttl == 0 ]] && echo "the default 5 s host lease" || echo "a $ttl host lease")
kvm=$([[ -e /dev/kvm ]] && echo "this machine's /dev/kvm" || echo "nested kvm_amd under TCG (lab)")
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for i in $(seq "$n"); do
  go test -count=1 -run 'TestHARestartAfterHostDeath$' -v ./internal/cluster/hatest/ >"$log" 2>&1 || { cat "$log"; exit 1; }
  grep -o 'its guest printing after [0-9.]* s' "$log" | grep -o '[0-9.]*' | tee -a "$log.times" | sed "s/^/run $i: guest printing again after /; s/$/ s/"
done
sort -n "$log.times" | awk -v kvm="$kvm" -v lease="$lease" '{ t[NR] = $1 } END {
  med = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
  printf "# HA restart after host death, %d runs, %s, KVM: %s\n", NR, lease, kvm
  printf "govisor: median %.1f s, worst %.1f s (target <= 10 s with the default settings)\n", med, t[NR]
  printf "vSphere HA: 15 s only to declare the host dead (ratio to govisor median %.1fx)\n", 15 / med
  printf "Proxmox VE ha-manager: ~120 s (ratio %.1fx)\n", 120 / med
}'
rm -f "$log.times"
