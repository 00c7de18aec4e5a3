#!/usr/bin/env bash
# govisor vs QEMU start-up, side by side (see main.go). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/../.."
./scripts/deps.sh test
make -s build guest >/dev/null
exec go run ./bench/boot "$@"
