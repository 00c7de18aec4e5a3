# govisor: the two commands a new machine needs are `make run` and `make test`.
GO        ?= go
CACHE     ?= $(CURDIR)/.cache
GUEST     := $(CACHE)/guest
BIN       := $(CACHE)/bin/govisor
export GOVISOR_CACHE := $(CACHE)

.PHONY: run test deps guest build bench clean test-debian

# The main job: build everything and boot the test guest in the foreground
# (its console on this terminal; Ctrl-A X quits, the guest's poweroff ends it).
run: build guest
	$(BIN) run --kernel $(GUEST)/bzImage --initrd $(GUEST)/initrd.cpio --cpus 2 --memory 512M \
		--cmdline 'console=ttyS0 quiet run="echo cpus: $$(nproc); grep MemTotal /proc/meminfo"'

# Every test, including the ones that boot Linux on KVM (they skip loudly without /dev/kvm).
test: deps guest
	CGO_ENABLED=0 $(GO) vet ./...
	CGO_ENABLED=0 $(GO) test -timeout 80m ./...

# Opt-in, slow on kvm_pvm: boot a debootstrapped Debian 12 (systemd) from
# virtio-blk to its login prompt.
test-debian: deps build
	./guest/build-debian.sh $(CACHE)/guest-debian
	GOVISOR_DEBIAN=$(CACHE)/guest-debian CGO_ENABLED=0 $(GO) test -timeout 120m -run TestDebianLogin -v ./internal/cli/

deps:
	./scripts/deps.sh test

guest: deps
	./guest/build.sh $(GUEST)

# Two static binaries: govisor (CLI and the VMM every VM runs) and
# govisor-agent (the host agent with embedded etcd; `govisor serve` runs it).
build:
	CGO_ENABLED=0 $(GO) build -o $(dir $(BIN)) ./cmd/govisor ./cmd/govisor-agent

bench: build guest
	./bench/boot/run.sh

clean:
	rm -rf $(CACHE)/bin
