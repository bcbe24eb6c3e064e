#!/bin/sh
# PID 1 of a lab guest (busybox initramfs). Loads the virtio and ext4 modules, sets the address and
# route given on the kernel command line (lab.ip=A.B.C.D/NN lab.gw=A.B.C.D lab.name=NAME), mounts the
# app disk at /app, starts dropbear and the app, then hands over to busybox init, which reaps the
# orphans appctl leaves behind.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /run /var/run /var/log /tmp /app
mount -t devpts devpts /dev/pts
log() { echo "lab-init: $*"; }

# virtio_net is a module, so the kernel's own ip= cannot work: read our parameters ourselves.
ip_cidr=""
gateway=""
name="lab"
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    lab.ip=*) ip_cidr=${arg#lab.ip=} ;;
    lab.gw=*) gateway=${arg#lab.gw=} ;;
    lab.name=*) name=${arg#lab.name=} ;;
    esac
done
hostname "$name"

# Modules load only in dependency order (the list was sorted on the host).
for m in $(cat /etc/lab/modules); do
    insmod "/lib/modules/$m.ko" || log "insmod $m failed"
done

wait_for() { # wait_for PATH TEST: bounded wait for a device to appear
    i=0
    while ! test "$2" "$1" && [ "$i" -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    test "$2" "$1" || log "$1 did not appear within 10 s"
}

ip link set lo up
wait_for /sys/class/net/eth0 -e
if [ -n "$ip_cidr" ]; then
    ip addr add "$ip_cidr" dev eth0
fi
ip link set eth0 up
# The host reaches us from outside our /24 (through the lab namespace's veth): replies need this route.
if [ -n "$gateway" ]; then
    ip route add default via "$gateway" dev eth0 || log "cannot add the default route via $gateway"
fi

wait_for /dev/vda -b
mount -t ext4 /dev/vda /app || log "cannot mount /dev/vda on /app"

dropbear -s -p 22 -r /etc/dropbear/dropbear_ed25519_host_key -P /run/dropbear.pid -E 2>>/var/log/dropbear.log
/app/bin/appctl start
log "ready: $name $ip_cidr"
exec /sbin/init
