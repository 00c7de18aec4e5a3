#!/bin/sh
# govisor test-guest /init. The kernel option run=CMD runs CMD with sh -c
# after the GUEST-READY marker, then the guest powers off (ACPI) or reboots
# (no ACPI, or the option done=reboot; govisor --on-reboot=exit ends on
# that). Without run= a shell runs on the console.
# Debian's busybox-static runs its applets without symlinks (PREFER_APPLETS),
# and on kvm_pvm every system call is slow: so no `busybox --install`.
/bin/busybox mount -a
echo GUEST-READY
if [ -n "$run" ]; then
	if [ "$run" != poweroff ]; then
		sh -c "$run"
		rc=$?
		# On kvm_pvm hosts guest user space very occasionally dies of a
		# signal it did not earn (seen: SIGSEGV in busybox sh). Say so and
		# run the command once more rather than fail the test it serves.
		if [ $rc -gt 128 ]; then
			echo "GUEST-RETRY: the command died of signal $((rc - 128)); running it again"
			sh -c "$run"
		fi
	fi
	echo GUEST-DONE
	if [ -d /sys/firmware/acpi ] && [ "$done" != reboot ]; then poweroff -f; else reboot -f; fi
fi
exec setsid -c sh
