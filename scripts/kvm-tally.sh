#!/usr/bin/env bash
# Says how many tests used KVM in a `make test` run, and where: lines
# "PKG<TAB>N<TAB>WHERE[<TAB>RETRY]" come from lab hosts (govisor lab
# testexec; RETRY says a lab host failed and the package ran again), bare
# test names from tests that ran on this machine's /dev/kvm
# (kvmtest.Require). In CI (CI=true) a run in which no KVM test ran fails.
set -euo pipefail
tally=${1:?usage: kvm-tally.sh FILE}
[[ -f $tally ]] || : > "$tally"
host=$(grep -c -v $'\t' "$tally" || true)
lab=$(awk -F'\t' 'NF>=3 {n += $2} END {print n+0}' "$tally")
where=$(awk -F'\t' 'NF>=3 {print $3}' "$tally" | sort -u | paste -sd, -)
per=$(awk -F'\t' 'NF>=3 {printf "%s%s %d", sep, $1, $2; sep=", "}' "$tally")
echo "KVM tests: $((host + lab)) ran: $host on this machine's /dev/kvm, $lab in ${where:-lab hosts}${per:+ ($per)}"
awk -F'\t' 'NF>=4 {print "LAB HOST FAILURE (the package ran again in a fresh lab host): " $1 ": " $4}' "$tally"
if [[ ${CI:-} == true ]] && ((host + lab == 0)); then
  echo "FAILED: no KVM test ran in CI" >&2
  exit 1
fi
