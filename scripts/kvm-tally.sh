#!/usr/bin/env bash
# Says how many tests used KVM in a `make test` run, and where: lines
# "PKG<TAB>N<TAB>WHERE" come from lab hosts (govisor lab testexec), bare test
# names from tests that ran on this machine's /dev/kvm (kvmtest.Require).
# In CI (CI=true) a run in which no KVM test ran is a failure.
set -euo pipefail
tally=${1:?usage: kvm-tally.sh FILE}
[[ -f $tally ]] || : > "$tally"
host=$(grep -c -v $'\t' "$tally" || true)
lab=$(awk -F'\t' 'NF==3 {n += $2} END {print n+0}' "$tally")
where=$(awk -F'\t' 'NF==3 {print $3}' "$tally" | sort -u | paste -sd, -)
per=$(awk -F'\t' 'NF==3 {printf "%s%s %d", sep, $1, $2; sep=", "}' "$tally")
echo "KVM tests: $((host + lab)) ran: $host on this machine's /dev/kvm, $lab in ${where:-lab hosts}${per:+ ($per)}"
if [[ ${CI:-} == true ]] && ((host + lab == 0)); then
  echo "FAILED: no KVM test ran in CI" >&2
  exit 1
fi
