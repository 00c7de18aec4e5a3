#!/usr/bin/env bash
# Partition/heal cycles: an HA VM whose guest appends a sequence to its
# disk on the lab's shared pool; its host is cut off the network and
# healed N times (each time the VM runs again on another host), and the
# sequence on the disk must never fork (two copies never ran at once).
# Runs TestPartitionCyclesNeverFork with N cycles (`make test` runs fewer,
# for CI's time budget) and prints each cycle's times.
#   bench/ha/partitions.sh [N]     (default 20; needs root for the lab's bridge)
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-20}
make -s build guest lab >/dev/null
export GOVISOR_CACHE=$PWD/.cache GOVISOR_TEST_BINDIR=$PWD/.cache/bin/ CI=true CGO_ENABLED=0 GOVISOR_PARTITION_CYCLES=$n
kvm=$([[ -e /dev/kvm ]] && echo "this machine's /dev/kvm" || echo "nested kvm_amd under TCG (lab)")
echo "# $n partition/heal cycles of an HA VM, KVM: $kvm"
go test -count=1 -timeout 120m -run 'TestPartitionCyclesNeverFork$' -v ./internal/cluster/hatest/ 2>&1 |
  grep -E 'cycle [0-9]+:|cycles in|^(--- |ok|FAIL)|fork|two copies|gap'
