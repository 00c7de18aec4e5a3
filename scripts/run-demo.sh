#!/usr/bin/env bash
# The main job (make run): a single-host govisor platform with no set-up.
# Starts the host agent (govisor serve: embedded etcd, REST API on a Unix
# socket) in .cache/demo, defines a VM from YAML with `govisor vm create`,
# follows its serial console until the guest powers off, then stops the agent.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.cache/bin
DEMO=$PWD/.cache/demo
GUEST=$PWD/.cache/guest
rm -rf "$DEMO"
mkdir -p "$DEMO"
cat > "$DEMO/demo.yaml" <<YAML
name: demo
cpus: 2
memory: 512M
kernel: $GUEST/bzImage
initrd: $GUEST/initrd.cpio
cmdline: 'console=ttyS0 quiet rodata=off run="echo cpus: \$(nproc); grep MemTotal /proc/meminfo"'
restartPolicy: never
YAML
export GOVISOR_SOCKET=$DEMO/govisor.sock
"$BIN/govisor" serve --state-dir "$DEMO/state" --socket "$GOVISOR_SOCKET" --log-format text 2>"$DEMO/agent.log" &
agent=$!
trap 'kill $agent 2>/dev/null; wait $agent 2>/dev/null || true' EXIT
for _ in $(seq 100); do [[ -S $GOVISOR_SOCKET ]] && break; sleep 0.1; done
echo "== govisor serve is up (state in $DEMO/state); creating the VM from $DEMO/demo.yaml"
"$BIN/govisor" vm create -f "$DEMO/demo.yaml"
"$BIN/govisor" vm list
echo "== the guest's serial console (on kvm_pvm hosts Linux takes a minute or two to boot):"
shown=0
for _ in $(seq 1800); do
  con=$("$BIN/govisor" vm console --log demo 2>/dev/null || true)
  if (( ${#con} > shown )); then printf '%s' "${con:shown}"; shown=${#con}; fi
  state=$("$BIN/govisor" vm show demo -o json | sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' | head -1)
  [[ $state == stopped || $state == failed ]] && break
  sleep 0.5
done
echo
"$BIN/govisor" vm list
