#!/usr/bin/env bash
# Runs the side-by-side benchmarks (bench/boot, bench/io, bench/migrate,
# bench/api) inside one lab host, where govisor and QEMU both use the lab
# host's KVM: on a machine without /dev/kvm that is nested kvm_amd under
# TCG (each result is marked with the kind of KVM it ran on). Also times
# `govisor lab up --hosts 3` to "all agents ready".
#   bench/lab/run.sh [boot jail firmware io migrate api labup]   (default: all)
# Needs root (the lab's bridge). Output: bench/lab/results-DATE.txt too.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s build guest lab >/dev/null
export GOVISOR_CACHE=$PWD/.cache
BIN=$PWD/.cache/benchbin
rm -rf "$BIN"; mkdir -p "$BIN"
cp .cache/bin/govisor .cache/bin/govisor-agent "$BIN/"
for b in boot io migrate api; do CGO_ENABLED=0 go build -o "$BIN/bench-$b" ./bench/$b; done
G="$BIN/govisor"
export GOVISOR_LAB_NET=${GOVISOR_LAB_NET:-5}
what=${*:-boot jail firmware io migrate api labup}
out=bench/lab/results-$(date +%Y%m%d-%H%M).txt
"$G" lab --net "$GOVISOR_LAB_NET" down >/dev/null 2>&1 || true
trap '"$G" lab --net "$GOVISOR_LAB_NET" down >/dev/null 2>&1 || true' EXIT
{
  echo "# govisor vs QEMU inside a lab host, $(date -u +%FT%TZ), $(nproc) CPUs, $(qemu-system-x86_64 --version | head -1)"
  for w in $what; do
    case $w in
      labup)
        "$G" lab --net "$GOVISOR_LAB_NET" down >/dev/null 2>&1 || true
        echo "== govisor lab up --hosts 3 (to all agents ready)"
        "$G" lab --net "$GOVISOR_LAB_NET" up --hosts 3 | grep -E 'booted|ready|KVM|TCG'
        "$G" lab --net "$GOVISOR_LAB_NET" down >/dev/null ;;
      *)
        if ! "$G" lab --net "$GOVISOR_LAB_NET" status >/dev/null 2>&1; then
          "$G" lab --net "$GOVISOR_LAB_NET" up --hosts 1 --cpus 2 --memory 5120 --with-qemu --no-serve --shared-storage=false | grep -E 'host\(s\),'
        fi
        echo "== bench/$w in a lab host ($("$G" lab --net "$GOVISOR_LAB_NET" status | head -1 | sed 's/.*: //'))"
        L() { "$G" lab --net "$GOVISOR_LAB_NET" exec lab1 -- "$@"; }
        case $w in
          boot) L sh -c 'cd /tmp && bench-boot -govisor /opt/govisor/bin/govisor -guest /guest -n 10 -linux-runs 3' ;;
          jail) L sh -c 'mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup; cd /tmp && bench-boot -jail -govisor /opt/govisor/bin/govisor -guest /guest -n 10 -linux-runs 3' ;;
          firmware) L sh -c 'cd /tmp && bench-boot -firmware -govisor /opt/govisor/bin/govisor -guest /guest -linux-runs 3' ;;
          io) L sh -c 'cd /tmp && bench-io -govisor /opt/govisor/bin/govisor -guest /guest -runs 2' ;;
          migrate) L sh -c 'cd /tmp && bench-migrate -govisor /opt/govisor/bin/govisor -runs 3 -memory-mib 1024' ;;
          api) L sh -c 'cd /tmp && bench-api -govisor /opt/govisor/bin/govisor -n 20' ;;
        esac || echo "bench/$w failed: exit $?" ;;
    esac
  done
} 2>&1 | tee "$out"
