# govisor: the two commands a new machine needs are `make run` and `make test`.
GO        ?= go
CACHE     ?= $(CURDIR)/.cache
GUEST     := $(CACHE)/guest
BIN       := $(CACHE)/bin/govisor
export GOVISOR_CACHE := $(CACHE)

.PHONY: run test deps guest build bench clean test-debian

# The main job: a single-host govisor (the agent with embedded etcd) boots
# the test guest from a YAML definition and shows its console until it
# powers off. `govisor run` boots a VM in the foreground without the agent.
run: build guest
	./scripts/run-demo.sh

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
