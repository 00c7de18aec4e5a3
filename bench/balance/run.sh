#!/usr/bin/env bash
# Load balancing: three busy VMs on one host of an idle 3-host lab
# (a 100/0/0 split); with the balancer in automatic mode (a plan every
# 30 s), the time until the hosts' measured loads are within the band and
# the live migrations it took. Runs the cluster test TestAutomaticBalance
# (a fresh lab each time) N times.
#   bench/balance/run.sh [N]     (default 3; needs root for the lab's bridge)
# vSphere DRS, for comparison, plans every 5 minutes by default.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-3}
make -s build guest lab >/dev/null
export GOVISOR_CACHE=$PWD/.cache GOVISOR_TEST_BINDIR=$PWD/.cache/bin/ CI=true CGO_ENABLED=0
kvm=$([[ -e /dev/kvm ]] && echo "this machine's /dev/kvm" || echo "nested kvm_amd under TCG (lab)")
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "# load balancing from a 3/0/0 split, KVM: $kvm"
for i in $(seq "$n"); do
  go test -count=1 -timeout 30m -run 'TestAutomaticBalance$' -v ./internal/cluster/hatest/ >"$log" 2>&1 || { cat "$log"; exit 1; }
  grep -o 'balanced: .*' "$log" | sed "s/^/run $i: /"
done
echo "vSphere DRS: one plan every 300 s by default (govisor: every 30 s)"
