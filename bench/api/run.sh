#!/usr/bin/env bash
# VM lifecycle through the agent's REST API, and through libvirt when it can
# run here (see main.go). Run from anywhere, as root.
set -euo pipefail
cd "$(dirname "$0")/../.."
./scripts/deps.sh test
./scripts/deps.sh libvirt
make -s build >/dev/null
# libvirt runs QEMU as libvirt-qemu (group kvm); Debian's udev rule makes
# /dev/kvm root:kvm 0660, which hosts without udev (containers) lack.
if command -v virsh >/dev/null && [ -e /dev/kvm ] && [ "$(stat -c %G /dev/kvm)" != kvm ] && getent group kvm >/dev/null; then
	chgrp kvm /dev/kvm && chmod 660 /dev/kvm
fi
exec go run ./bench/api "$@"
