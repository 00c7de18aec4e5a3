#!/bin/busybox sh
# /init of a govisor lab host (scripts/lab-build.sh puts it in base.cpio).
# Kernel options (read from /proc/cmdline: dotted names never reach init's
# environment):
#   lab.name=NAME       host name
#   lab.ip=ADDR/PREFIX  address of eth0 (a link-local one on the lab bridge)
#   lab.agent=PORT      run `govisor lab agent` on lab.ip:PORT (lab up)
#   lab.token=TOKEN     the bearer token the agent asks for
#   lab.role=store      the lab's storage host: exports its disk (/dev/vda,
#                       ext4) over NFSv4 as the lab's shared storage
#   lab.nfs=ADDR        mount the storage host's export at /srv/shared
# A /run.sh in an appended overlay cpio is run instead of the agent (the
# test runner); its exit ends the host (poweroff).
# The console (ttyS0) carries LAB-* status lines for the host side:
# LAB-INIT, LAB-KVM, LAB-HEARTBEAT (every 5 s: silence means a stuck lab),
# LAB-DONE.
/bin/busybox --install -s /bin
export PATH=/opt/govisor/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /dev/pts /dev/shm /run/netns
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
up() { cut -d' ' -f1 /proc/uptime; }
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -1; }
name=$(arg lab.name); ip=$(arg lab.ip); agent=$(arg lab.agent); token=$(arg lab.token)
role=$(arg lab.role); nfs=$(arg lab.nfs)
hostname "${name:-lab}"
echo "${name:-lab}" >/etc/hostname
echo "LAB-INIT uptime=$(up)"
# kvm_amd or kvm_intel: only the one matching the (emulated) CPU loads.
while read -r m; do
	insmod "/lib/modules/$m" 2>/dev/null || case $m in kvm-amd.ko | kvm-intel.ko) ;; *) echo "LAB-WARN insmod $m failed" ;; esac
done </lib/modules/order
if [ -c /dev/kvm ]; then
	echo "LAB-KVM present: $(dmesg | grep -o -m1 -E 'SVM: kvm: Nested Paging enabled|kvm_intel: .*|Nested Paging enabled')"
else
	echo "LAB-KVM absent: $(dmesg | grep -i -m3 -E 'kvm|svm' | tr '\n' ' ')"
fi
# One idle VM for the host's whole life, so that KVM's static keys never
# flip (and patch kernel text) as test VMs come and go: under multi-threaded
# TCG a stale int3 from that patching froze or oopsed lab hosts
# (govisor lab-hold-kvm says more).
if [ -c /dev/kvm ] && [ -x /opt/govisor/bin/govisor ] && [ "$role" != store ]; then
	govisor lab-hold-kvm >/run/kvm-held 2>&1 &
	i=0; while [ $i -lt 200 ] && ! grep -q LAB-KVM-HELD /run/kvm-held; do sleep 0.05; i=$((i+1)); done
	echo "$(cat /run/kvm-held)"
fi
ip link set lo up
if [ -n "$ip" ]; then
	ip link set eth0 up && ip addr add "$ip" dev eth0 || echo "LAB-WARN eth0 $ip failed"
fi
if [ "$role" = store ]; then
	# NFSv4 only: no rpcbind, no statd. A 10 s grace period and lease (the
	# kernel's minimum) instead of 90 s: clients wait out the grace period
	# before they may open files, and a lab boots in seconds.
	mkdir -p /srv/shared /proc/fs/nfsd
	mount -t ext4 /dev/vda /srv/shared || echo "LAB-WARN mount /dev/vda failed"
	mount -t nfsd nfsd /proc/fs/nfsd
	: >/var/lib/nfs/etab; : >/var/lib/nfs/rmtab
	echo "/srv/shared *(rw,sync,no_root_squash,no_subtree_check,insecure,fsid=0)" >/etc/exports
	exportfs -ra && rpc.mountd -N 2 -N 3 -u && rpc.nfsd -N 3 -U -G 10 -L 10 8 &&
		echo "LAB-NFS exporting /srv/shared ($(df -h /srv/shared | awk 'NR==2{print $2}'))" ||
		echo "LAB-WARN the NFS server did not start"
fi
if [ -n "$nfs" ]; then
	# Mounted in the background: the storage host may still be booting.
	mkdir -p /srv/shared
	(until mount.nfs4 "$nfs:/" /srv/shared -o vers=4.2,hard,timeo=30 2>/run/nfs-mount.err; do sleep 1; done
		echo "LAB-NFS mounted $nfs:/ at /srv/shared uptime=$(up)") &
fi
(while :; do
	echo "LAB-HEARTBEAT uptime=$(up) load=$(cut -d' ' -f1 /proc/loadavg) free=$(free -m | awk '/Mem:/{print $4}')M"
	sleep 5
done) &
if [ -x /run.sh ]; then
	/run.sh
	echo "LAB-DONE rc=$? uptime=$(up)"
	sync
	poweroff -f
fi
if [ -n "$agent" ]; then
	(while :; do
		govisor lab agent --listen "${ip%/*}:$agent" --token "$token" >>/run/lab-agent.log 2>&1
		echo "LAB-WARN lab agent exited rc=$?; restarting"
		sleep 1
	done) &
fi
echo "LAB-READY uptime=$(up)"
# `govisor lab console HOST`: a shell on the serial console.
while :; do setsid cttyhack sh -l; done
