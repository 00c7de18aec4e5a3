#!/usr/bin/env bash
# The body of `make test` (the Makefile passes its settings in the
# environment: BINDIR, CACHE, GUEST, TALLY, PARTITION_CYCLES, RACE_SKIP,
# RACE_PKGS).
#
# Ordered for a 2-CPU machine without /dev/kvm, where the KVM tests run in
# TCG lab hosts and every minute of CI's 45 counts (README, "What a make
# test costs"):
#   1. The set-up `make deps guest lab build` does, with the test guest's
#      kernel (minutes of compiling, the first time) built while the rest
#      of the packages install (minutes of downloading), then go vet and
#      go mod tidy.
#   2. The packages that start labs of several hosts (the cluster tests,
#      the lab's own, the web console's), one at a time: each lab takes
#      every CPU. Beside them, at the lowest CPU priority, the lab's own
#      QEMU is built (scripts/lab-qemu.sh, which the UEFI tests need) and
#      staticcheck runs: they take only what those labs leave idle (about a
#      third of the CPUs: the labs mostly wait on leases and timeouts).
#   3. Every other package, their lab hosts as many at once as there are
#      CPUs (lab.Slots), the longest first, and the race run (RACE_PKGS)
#      beside them: its lab host takes a slot like a package's.
# A failed set-up stops there; every test step runs even when one before it
# failed (one CI run shows every failure), and the exit code says so.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${BINDIR:?}" "${CACHE:?}" "${GUEST:?}" "${TALLY:?}" "${PARTITION_CYCLES:?}" "${RACE_SKIP:?}" "${RACE_PKGS:?}"
GO=${GO:-go}
step() { echo "[make] $(date -u +%T) test: $*"; }
rc=0
fail() { [[ $rc != 0 ]] || rc=$1; }

BG=$CACHE/test-background
rm -rf "$BG"; mkdir -p "$BG"

step "deps for the guest kernel"
./scripts/deps.sh guest || exit 1
step "the guest kernel (beside the rest of the set-up)"
./guest/build.sh "$GUEST" > "$BG/guest.log" 2>&1 &
guest=$!
step deps
./scripts/deps.sh test || exit 1
step lab
./scripts/lab-build.sh "$CACHE/lab" || exit 1
step build
CGO_ENABLED=0 $GO build -o "$BINDIR" ./cmd/govisor ./cmd/govisor-agent ./guest/vsockpeer || exit 1
step "vet and tidy"
CGO_ENABLED=0 $GO vet ./... || exit 1
$GO mod tidy -diff || exit 1
wait $guest || { cat "$BG/guest.log"; echo "the guest kernel did not build (above)" >&2; exit 1; }
cat "$BG/guest.log"
step "firmware test disks"
./scripts/firmware.sh "$GUEST" || exit 1
rm -f "$TALLY"

export GOVISOR_TEST_BINDIR=$BINDIR GOVISOR_KVM_TALLY=$TALLY GOVISOR_CLUSTER_TESTS=1 \
  GOVISOR_PARTITION_CYCLES=$PARTITION_CYCLES
EXEC="${BINDIR}govisor-agent lab testexec"
MULTI=(./internal/cluster/hatest/ ./internal/lab/ ./internal/webui/)
# Longest first (a package's lab host is one slot for all of its tests).
FIRST=(./internal/vm/ ./internal/agent/ ./internal/cli/ ./internal/cluster/store/)

# Its own process group (setsid), so that its priority can be raised again
# as a whole, compilers it has yet to start included.
setsid nice -n 19 bash -c '
  ./scripts/lab-qemu.sh "$1/lab" > "$2/lab-qemu.log" 2>&1; echo $? > "$2/lab-qemu.rc"
  CGO_ENABLED=0 $3 tool staticcheck ./... > "$2/lint.log" 2>&1; echo $? > "$2/lint.rc"' _ "$CACHE" "$BG" "$GO" &
bg=$!
trap 'kill -- -$bg 2> /dev/null' EXIT

step "the multi-host labs, one at a time (the lab's QEMU and staticcheck beside them)"
CGO_ENABLED=0 $GO test -p 1 -exec "$EXEC" -timeout 80m "${MULTI[@]}" || fail 1

if [[ ! -f $BG/lab-qemu.rc ]]; then
  step "waiting for the lab's QEMU build"
  # Nothing else runs now: give it the CPUs back (root may lower nice).
  renice -n 0 -g $bg > /dev/null 2>&1 || true
  while [[ ! -f $BG/lab-qemu.rc ]] && kill -0 $bg 2> /dev/null; do sleep 2; done
fi
cat "$BG/lab-qemu.log"
if [[ $(cat "$BG/lab-qemu.rc" 2> /dev/null) != 0 ]]; then
  echo "the lab's QEMU did not build (above): the UEFI tests will fail" >&2
  fail 1
fi

step "every other package, and the race run beside them"
mapfile -t rest < <($GO list -f '{{.Dir}}' ./... | sed "s|^$PWD/|./|; s|\$|/|" |
  grep -v -x -F $(printf -- '-e %s ' "${MULTI[@]}" "${FIRST[@]}"))
# The race run's KVM tests are the normal run's again: they stay out of
# the tally. Its lab host takes a slot like any package's; its output
# comes when it ends.
GOVISOR_KVM_TALLY= CGO_ENABLED=1 $GO test -race -exec "$EXEC" -timeout 80m -skip "$RACE_SKIP" $RACE_PKGS \
  > "$BG/race.log" 2>&1 &
race=$!
CGO_ENABLED=0 $GO test -exec "$EXEC" -timeout 80m "${FIRST[@]}" "${rest[@]}" || fail 1
wait $race || fail 1
step "the race run (beside the packages above)"
cat "$BG/race.log"

step "staticcheck (run beside the labs)"
wait $bg
cat "$BG/lint.log"
[[ $(cat "$BG/lint.rc" 2> /dev/null) == 0 ]] || { echo "staticcheck failed (above)" >&2; fail 1; }

step "done"
./scripts/kvm-tally.sh "$TALLY" || fail 1
exit $rc
