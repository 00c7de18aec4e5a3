package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// debianLogin is what the Debian test disk's serial getty prints when it
// logs root in (scripts/debian-disk.sh): the login prompt reached.
const debianLogin = "login: root (automatic login)"

// bootMarks are console lines that end the phases of a firmware boot, in
// order: where a VMM is slower shows in the phase it loses time in (the
// firmware's and GRUB's disk reads are synchronous virtio-blk requests,
// one at a time; the kernel's are not). Each phase runs from the previous
// mark seen: a mark not seen (the disk's kernel runs with quiet) merges its
// phase into the next.
var bootMarks = []struct{ name, text string }{
	{"-> \"Booting `Debian\" (firmware)", "Booting `Debian"},
	{"-> \"Loading initial ramdisk\" (kernel read)", "Loading initial ramdisk"},
	{"-> \"Linux version\"", "Linux version"},
	{"-> \"Welcome to\" (systemd)", "Welcome to "},
	{"-> login prompt", debianLogin},
}

// measureLogin runs cmd until its console shows debianLogin, then kills
// it: firmware, boot loader, kernel, initramfs and systemd to the getty.
// marks holds, for each of bootMarks seen, the time since the previous one.
func measureLogin(args []string, timeout time.Duration) (total time.Duration, marks map[string]time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	// The guest waits on its console for nothing; an open, silent stdin
	// keeps both VMMs from seeing EOF there.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, nil, err
	}
	defer stdin.Close()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	// GRUB redraws its menu without newlines.
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var last []string
	marks = map[string]time.Duration{}
	prev, next := start, 0
	for sc.Scan() {
		for j := next; j < len(bootMarks); j++ {
			if strings.Contains(sc.Text(), bootMarks[j].text) {
				now := time.Now()
				marks[bootMarks[j].name] = now.Sub(prev)
				prev, next = now, j+1
				break
			}
		}
		if strings.Contains(sc.Text(), debianLogin) {
			return time.Since(start), marks, nil
		}
		last = append(last, sc.Text())
		if len(last) > 15 {
			last = last[1:]
		}
	}
	return 0, nil, fmt.Errorf("no login prompt (%v); last console lines:\n%s\nstderr:\n%s", ctx.Err(), strings.Join(last, "\n"), stderr.String())
}

// firmwareRaw boots raw copies instead of qcow2 overlays: the image
// format's share of the time, in both VMMs.
var firmwareRaw = flag.Bool("firmware-raw", false, "with -firmware: boot a raw copy of the disk instead of a qcow2 overlay over it")

// benchFirmware boots the Debian test disks through their firmware, each
// in govisor and in QEMU with the same firmware image, from virtio-blk, to
// the serial login prompt, runs times each, interleaved: the BIOS disk
// through SeaBIOS (govisor `run --firmware bios`, QEMU `-M pc -bios`), the
// UEFI disk through OVMF (govisor `run --firmware uefi`, QEMU `-M pc` with
// OVMF's code and a copy of its variable template on pflash). Each boot
// writes to its own qcow2 overlay on the cache's disk, so every boot
// starts from the same image (QEMU's snapshot=on would want a /var/tmp,
// which a lab host lacks), and each UEFI boot starts from fresh variables.
func benchFirmware(kinds, govisor, qemu, guestDir, dir string, runs int) {
	for _, kind := range strings.Split(kinds, ",") {
		switch kind {
		case "bios", "uefi":
			benchFirmwareKind(kind, govisor, qemu, guestDir, dir, runs)
		default:
			fmt.Fprintf(os.Stderr, "-firmware-kinds: %q: give bios, uefi or bios,uefi\n", kind)
			os.Exit(2)
		}
	}
}

func benchFirmwareKind(kind, govisor, qemu, guestDir, dir string, runs int) {
	disk := filepath.Join(guestDir, "debian-"+kind+".qcow2")
	need := []string{disk}
	bios := filepath.Join(guestDir, "bios-256k.bin")
	code, varsTemplate := filepath.Join(guestDir, "OVMF_CODE_4M.fd"), filepath.Join(guestDir, "OVMF_VARS_4M.fd")
	title := "Debian 12 disk through SeaBIOS (MBR, GRUB"
	if kind == "bios" {
		need = append(need, bios)
	} else {
		need = append(need, code, varsTemplate)
		title = "Debian 12 disk through OVMF (GPT, ESP, GRUB"
	}
	for _, p := range need {
		if _, err := os.Stat(p); err != nil {
			fmt.Printf("firmware boot (%s): skipped (%v; run scripts/firmware.sh and scripts/debian-disk.sh)\n", kind, err)
			return
		}
	}
	var g, q []float64
	gMarks, qMarks := map[string][]float64{}, map[string][]float64{}
	var fails []string
	for i := 0; i < runs; i++ {
		format := "qcow2"
		if *firmwareRaw {
			format = "raw"
		}
		ov, qov := filepath.Join(dir, fmt.Sprintf("debian-%d.%s", i, format)), filepath.Join(dir, fmt.Sprintf("debian-qemu-%d.%s", i, format))
		for _, p := range []string{ov, qov} {
			mk := []string{govisor, "image", "create", "-f", "qcow2", "-b", disk, "-F", "qcow2", p}
			if *firmwareRaw {
				mk = []string{govisor, "image", "convert", "-O", "raw", disk, p}
			}
			if out, err := exec.Command(mk[0], mk[1:]...).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n%s", strings.Join(mk, " "), err, out)
				os.Exit(1)
			}
		}
		gArgs := []string{govisor, "run", "--firmware", kind, "--disk", "path=" + ov, "--cpus", "1", "--memory", "512M"}
		qArgs := []string{qemu, "-enable-kvm", "-M", "pc", "-cpu", "host", "-smp", "1", "-m", "512",
			"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
			"-drive", "file=" + qov + ",format=" + format + ",if=virtio"}
		gVars, qVars := filepath.Join(dir, "vars-govisor.fd"), filepath.Join(dir, "vars-qemu.fd")
		if kind == "bios" {
			gArgs = append(gArgs, "--firmware-image", bios)
			qArgs = append(qArgs, "-bios", bios)
		} else {
			// govisor makes a missing variable file from OVMF's template;
			// QEMU writes into the file it is given.
			os.Remove(gVars)
			if err := copyFile(varsTemplate, qVars); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			gArgs = append(gArgs, "--firmware-image", code, "--firmware-vars", gVars)
			qArgs = append(qArgs, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
				"-drive", "if=pflash,format=raw,unit=1,file="+qVars)
		}
		if d, m, err := measureLogin(gArgs, 10*time.Minute); err == nil {
			g = append(g, d.Seconds())
			addMarks(gMarks, m)
		} else {
			fails = append(fails, "govisor: "+err.Error())
		}
		if d, m, err := measureLogin(qArgs, 10*time.Minute); err == nil {
			q = append(q, d.Seconds())
			addMarks(qMarks, m)
		} else {
			fails = append(fails, "qemu: "+err.Error())
		}
		os.Remove(ov)
		os.Remove(qov)
	}
	on := "a qcow2 overlay over the disk"
	if *firmwareRaw {
		on = "a raw copy of the disk"
	}
	fmt.Printf("\n%s, cloud kernel, systemd; virtio-blk on %s, 512 MiB, 1 vCPU), %d run(s) each (median)\n", title, on, runs)
	fmt.Printf("%-28s %12s %12s %8s\n", "", "govisor", "qemu pc", "ratio")
	fmt.Printf("%-28s %10.2f s %10.2f s %8s\n", "start -> login prompt", median(g), median(q), ratio(median(g), median(q)))
	for _, b := range bootMarks {
		if gm, qm := gMarks[b.name], qMarks[b.name]; len(gm) > 0 && len(qm) > 0 {
			fmt.Printf("  %-44s %10.2f s %10.2f s %8s\n", b.name, median(gm), median(qm), ratio(median(gm), median(qm)))
		}
	}
	for _, f := range fails {
		fmt.Println("failed run:", f)
	}
}

// addMarks appends one boot's phase times to all.
func addMarks(all map[string][]float64, m map[string]time.Duration) {
	for k, d := range m {
		all[k] = append(all[k], d.Seconds())
	}
}

// copyFile copies src to dst (mode 0600).
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}
