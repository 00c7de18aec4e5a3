package main

import (
	"bufio"
	"context"
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

// measureLogin runs cmd until its console shows debianLogin, then kills
// it: firmware, boot loader, kernel, initramfs and systemd to the getty.
func measureLogin(args []string, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	// The guest waits on its console for nothing; an open, silent stdin
	// keeps both VMMs from seeing EOF there.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	defer stdin.Close()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	var last []string
	for sc.Scan() {
		if strings.Contains(sc.Text(), debianLogin) {
			return time.Since(start), nil
		}
		last = append(last, sc.Text())
		if len(last) > 15 {
			last = last[1:]
		}
	}
	return 0, fmt.Errorf("no login prompt (%v); last console lines:\n%s\nstderr:\n%s", ctx.Err(), strings.Join(last, "\n"), stderr.String())
}

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
	var fails []string
	for i := 0; i < runs; i++ {
		ov, qov := filepath.Join(dir, fmt.Sprintf("debian-%d.qcow2", i)), filepath.Join(dir, fmt.Sprintf("debian-qemu-%d.qcow2", i))
		for _, p := range []string{ov, qov} {
			if out, err := exec.Command(govisor, "image", "create", "-f", "qcow2", "-b", disk, "-F", "qcow2", p).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "overlay: %v\n%s", err, out)
				os.Exit(1)
			}
		}
		gArgs := []string{govisor, "run", "--firmware", kind, "--disk", "path=" + ov, "--cpus", "1", "--memory", "512M"}
		qArgs := []string{qemu, "-enable-kvm", "-M", "pc", "-cpu", "host", "-smp", "1", "-m", "512",
			"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
			"-drive", "file=" + qov + ",format=qcow2,if=virtio"}
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
		if d, err := measureLogin(gArgs, 5*time.Minute); err == nil {
			g = append(g, d.Seconds())
		} else {
			fails = append(fails, "govisor: "+err.Error())
		}
		if d, err := measureLogin(qArgs, 5*time.Minute); err == nil {
			q = append(q, d.Seconds())
		} else {
			fails = append(fails, "qemu: "+err.Error())
		}
		os.Remove(ov)
		os.Remove(qov)
	}
	fmt.Printf("\n%s, cloud kernel, systemd; virtio-blk, 512 MiB, 1 vCPU), %d run(s) each (median)\n", title, runs)
	fmt.Printf("%-28s %12s %12s %8s\n", "", "govisor", "qemu pc", "ratio")
	fmt.Printf("%-28s %10.2f s %10.2f s %8s\n", "start -> login prompt", median(g), median(q), ratio(median(g), median(q)))
	for _, f := range fails {
		fmt.Println("failed run:", f)
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
