#!/usr/bin/env bash
# The main job (make run): a single-host govisor platform with no set-up.
# Starts the host agent (govisor serve: embedded etcd, REST API on a Unix
# socket) in .cache/demo, defines a VM from YAML with `govisor vm create`,
# follows its serial console until the guest powers off, then stops the agent.
# On a machine without /dev/kvm the same runs inside a lab host (a QEMU VM
# whose kernel loads KVM: `govisor lab up --hosts 1`), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.cache/bin
DEMO=$PWD/.cache/demo
GUEST=$PWD/.cache/guest
rm -rf "$DEMO"
mkdir -p "$DEMO"
if [[ -e /dev/kvm ]]; then
  export GOVISOR_SOCKET=$DEMO/govisor.sock
  "$BIN/govisor" serve --state-dir "$DEMO/state" --socket "$GOVISOR_SOCKET" --log-format text 2>"$DEMO/agent.log" &
  agent=$!
  trap 'kill $agent 2>/dev/null; wait $agent 2>/dev/null || true' EXIT
  for _ in $(seq 100); do [[ -S $GOVISOR_SOCKET ]] && break; sleep 0.1; done
  echo "== govisor serve is up (state in $DEMO/state)"
  gv() { "$BIN/govisor" "$@"; }
  put() { cp "$1" "$2"; }
else
  echo "== no /dev/kvm on this machine: the demo runs in a lab host, a QEMU VM with KVM inside (govisor lab up --hosts 1)"
  export GOVISOR_CACHE=$PWD/.cache
  "$BIN/govisor" lab down >/dev/null 2>&1 || true
  trap '"$BIN/govisor" lab down >/dev/null || true' EXIT
  "$BIN/govisor" lab up --hosts 1 --shared-storage=false
  gv() { "$BIN/govisor" lab exec lab1 -- govisor "$@"; }
  put() { "$BIN/govisor" lab exec lab1 -- sh -c 'printf "%s" "$1" > "$2"' sh "$(cat "$1")" "$2"; }
  GUEST=/guest
  DEMOIN=/tmp
fi
cat > "$DEMO/demo.yaml" <<YAML
name: demo
cpus: 2
memory: 512M
kernel: $GUEST/bzImage
initrd: $GUEST/initrd.cpio
cmdline: 'console=ttyS0 quiet rodata=off run="echo cpus: \$(nproc); grep MemTotal /proc/meminfo"'
restartPolicy: never
YAML
yaml=${DEMOIN:-$DEMO}/demo.yaml
put "$DEMO/demo.yaml" "$yaml"
echo "== creating the VM from $yaml"
gv vm create -f "$yaml"
gv vm list
echo "== the guest's serial console:"
shown=0
for _ in $(seq 1800); do
  con=$(gv vm console --log demo 2>/dev/null || true)
  if (( ${#con} > shown )); then printf '%s' "${con:shown}"; shown=${#con}; fi
  state=$(gv vm show demo -o json | sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' | head -1)
  [[ $state == stopped || $state == failed ]] && break
  sleep 0.5
done
echo
gv vm list
