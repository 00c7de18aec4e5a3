#!/usr/bin/env bash
# Runs every fuzz target in the repository (or those of PKGS matching
# FUZZ) for FUZZTIME each, one after the other, and prints a table of the
# executions. Go keeps an input that fails in the package's
# testdata/fuzz/FuzzName/ folder, where plain `go test` replays it from
# then on as a regression case: commit it with the fix.
#
#   FUZZTIME=30s      time per target (go test -fuzztime)
#   FUZZMINTIME=5s    time to minimise each new interesting input; Go's
#                     default of 60 s let large inputs (vmdk, vhdx) spend
#                     the whole run minimising instead of fuzzing
#   PKGS=./...        packages to search for targets
#   FUZZ=.            regexp the target names (Pkg.FuzzName) must match
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-30s}
FUZZMINTIME=${FUZZMINTIME:-5s}
PKGS=${PKGS:-./...}
FUZZ=${FUZZ:-.}
export CGO_ENABLED=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
failed=()
# count prints how many inputs the corpus folder $1 holds (0 if none).
count() { if [[ -d $1 ]]; then find "$1" -type f | wc -l; else echo 0; fi; }
printf '%-48s %-26s %12s %10s  %s\n' PACKAGE TARGET EXECS EXECS/S RESULT
# shellcheck disable=SC2086 # PKGS is a list of patterns
while IFS=$'\t' read -r pkg dir; do
  for name in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    short=${pkg#github.com/govisor/govisor/}
    [[ "$short.$name" =~ $FUZZ ]] || continue
    out="$log/$(echo "$short.$name" | tr / _)"
    result=ok
    corpus="$dir/testdata/fuzz/$name"
    before=$(count "$corpus")
    if ! go test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINTIME" "$pkg" >"$out" 2>&1; then
      if grep -q '^    context deadline exceeded$' "$out" && ! grep -q 'Failing input' "$out" &&
        [[ $(count "$corpus") == "$before" ]]; then
        # Go's fuzz coordinator can fail a run at the -fuzztime deadline
        # with nothing found (go.dev/issue/75804, fixed in Go 1.27).
        result="ok (deadline race, go.dev/issue/75804)"
      else
        result=FAILED
        failed+=("$short.$name")
      fi
    fi
    # The last "fuzz: elapsed: 31s, execs: N" line: the rate leaves out
    # building the instrumented test binary.
    last=$(grep -o 'elapsed: [0-9]*s, execs: [0-9]*' "$out" | tail -1 || true)
    execs=$(echo "$last" | awk '{print $4}')
    execs=${execs:-0}
    rate=$(echo "$last" | awk '{s = $2 + 0; printf "%.0f", (s > 0) ? ($4 / s) : 0}')
    printf '%-48s %-26s %12d %10s  %s\n' "$short" "$name" "$execs" "$rate" "$result"
    if [[ $result == FAILED ]]; then
      { grep -E -A8 -- '--- FAIL|Failing input|panic:' "$out" || tail -15 "$out"; } | sed 's/^/    /' | head -30
    fi
  done
done < <(go list -f '{{.ImportPath}}{{"\t"}}{{.Dir}}' $PKGS)
if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]} (inputs kept in the packages' testdata/fuzz)" >&2
  exit 1
fi
