# govisor: the two commands a new machine needs are `make run` and `make test`.
GO        ?= go
CACHE     ?= $(CURDIR)/.cache
GUEST     := $(CACHE)/guest
BIN       := $(CACHE)/bin/govisor
TALLY     := $(CACHE)/kvm-tally
export GOVISOR_CACHE := $(CACHE)

# Each step of a run says when it starts (UTC): where CI's minutes went.
STEP = @echo "[make] $$(date -u +%T) $@$(1)"

.PHONY: run test unit lint deps guest lab build bench clean test-debian test-uefi lab-qemu fuzz

# The main job: a single-host govisor (the agent with embedded etcd) boots
# the test guest from a YAML definition and shows its console until it
# powers off. `govisor run` boots a VM in the foreground without the agent.
run: build guest lab
	./scripts/run-demo.sh

# Every test. Test binaries with KVM tests run through `govisor lab
# testexec`: directly where /dev/kvm exists, otherwise in a lab host (a QEMU
# VM with KVM inside), with the prebuilt binaries of .cache/bin. Then the
# packages that run vCPUs and devices run again under the race detector
# (RACE_PKGS). The last line says how many KVM tests ran, and where. The
# steps, their order and what runs beside what: scripts/test-all.sh. It
# does what deps, guest, lab, build, lab-qemu and lint do, in its own order.
test:
	BINDIR=$(dir $(BIN)) CACHE=$(CACHE) GUEST=$(GUEST) TALLY=$(TALLY) PARTITION_CYCLES=$(PARTITION_CYCLES) \
	  RACE_SKIP='$(RACE_SKIP)' RACE_PKGS='$(RACE_PKGS)' GO=$(GO) ./scripts/test-all.sh

# Partition/heal cycles of hatest's TestPartitionCyclesNeverFork in `make
# test`: the issue's 20 (a cycle costs 16-30 s of a TCG lab: about 8 of
# CI's 45 minutes); fewer for a quick look.
PARTITION_CYCLES ?= 20

# The race run: the VM (vCPU threads, pause, snapshot, migration) and the
# devices it drives from their own goroutines. -race needs cgo, so only this
# run has it; its test binaries link glibc dynamically, which lab hosts carry
# (scripts/lab-build.sh copies the libraries of the tools they run). Its KVM
# tests are the normal run's again, so they stay out of the tally.
# RACE_SKIP: the boots of whole guests (Linux, SeaBIOS, OVMF), which the
# normal run covers and which are guest time, not VMM concurrency: they
# were most of the race run's lab time (one TCG lab vCPU). The Linux guest
# with hotplug, snapshot and migration (TestHotplugLinuxSnapshotMigrate)
# stays in.
RACE_SKIP := ^(TestLinuxBoot|TestLinuxCPUBaseline|TestSeaBIOS.*|TestOVMF.*|TestRTCWait.*|TestPCI64Window|TestInterruptPendingWithInterruptsOff)$$
RACE_PKGS := ./internal/vm/ ./internal/virtio/... ./internal/legacy/... ./internal/pci/ \
	./internal/pcihotplug/ ./internal/iobus/ ./internal/guestmem/

# The pure packages' tests: every package whose tests do not use
# internal/kvm/kvmtest needs no KVM and runs anywhere, in about a minute.
unit:
	CGO_ENABLED=0 $(GO) test $$(CGO_ENABLED=0 $(GO) list -f \
	  '{{.ImportPath}}{{range .TestImports}} {{.}}{{end}}{{range .XTestImports}} {{.}}{{end}}' ./... | \
	  awk '{ for (i = 2; i <= NF; i++) if ($$i ~ /\/internal\/kvm\/kvmtest$$/) next; print $$1 }')

# Every fuzz target, FUZZTIME (default 30s) each; found crashers stay in
# the packages' testdata/fuzz as regression cases (scripts/fuzz.sh).
fuzz:
	FUZZTIME=$(or $(FUZZTIME),30s) ./scripts/fuzz.sh

# Static checks beyond go vet: staticcheck, at the version go.mod pins.
lint:
	$(call STEP)
	CGO_ENABLED=0 $(GO) tool staticcheck ./...

# Opt-in, slow on kvm_pvm: boot a debootstrapped Debian 12 (systemd) from
# virtio-blk to its login prompt. Then the firmware disks: the BIOS Debian
# disk (scripts/debian-disk.sh: debootstrap + GRUB, 2.5-5 min to build)
# boots through SeaBIOS, and its VMDK/OVA/VHDX/VDI imports boot (build tag
# debiandisk: ~4 min of a TCG lab, beyond CI's 45-minute budget today).
test-debian: deps guest lab build
	./guest/build-debian.sh $(CACHE)/guest-debian
	GOVISOR_DEBIAN=$(CACHE)/guest-debian CGO_ENABLED=0 $(GO) test -timeout 120m -run TestDebianLogin -v ./internal/cli/
	./scripts/debian-disk.sh $(GUEST)
	GOVISOR_TEST_BINDIR=$(dir $(BIN)) CGO_ENABLED=0 $(GO) test -tags debiandisk -exec "$(dir $(BIN))govisor-agent lab testexec" \
	  -timeout 60m -run 'TestDebianBIOSBoot|TestDebianUEFIBoot|TestDebianImportBoots' -v ./internal/cli/

deps:
	$(call STEP)
	./scripts/deps.sh test

guest: deps
	$(call STEP)
	./guest/build.sh $(GUEST)
	./scripts/firmware.sh $(GUEST)

# A lab host's kernel and initramfs (Debian's cloud kernel; internal/lab).
lab: deps
	$(call STEP)
	./scripts/lab-build.sh $(CACHE)/lab

# The lab's own QEMU for TCG lab hosts (Debian's QEMU 10.0.2 source plus
# lab/qemu.patch: Debian's aborts on OVMF in a nested guest); about 5
# minutes once. Lab hosts run on it whenever it is built.
lab-qemu: deps
	$(call STEP)
	./scripts/lab-qemu.sh $(CACHE)/lab

# The UEFI boot tests alone (`make test` runs them too).
test-uefi: deps guest lab lab-qemu build
	GOVISOR_TEST_BINDIR=$(dir $(BIN)) CGO_ENABLED=0 $(GO) test -count=1 -timeout 60m \
	  -exec "$(dir $(BIN))govisor-agent lab testexec" -run 'OVMF|UEFI' -v ./internal/vm/ ./internal/cli/ ./internal/agent/

# Two static binaries: govisor (CLI and the VMM every VM runs) and
# govisor-agent (the host agent with embedded etcd; `govisor serve` runs it).
# vsockpeer is the guest side of the vsock tests.
build:
	$(call STEP)
	CGO_ENABLED=0 $(GO) build -o $(dir $(BIN)) ./cmd/govisor ./cmd/govisor-agent ./guest/vsockpeer

bench: build guest
	./bench/boot/run.sh

clean:
	rm -rf $(CACHE)/bin
