"""The lab's own libvirtd and its QEMU (TCG) domains.

libvirtd runs inside the lab's network namespace (``exec_prefix``), so every QEMU it starts, and every
tap it opens by name, is there too; a revert, which restarts QEMU, reopens its tap there as well. It
also runs in a private mount namespace where /etc/libvirt, /run/libvirt, /var/lib/libvirt,
/var/cache/libvirt and /var/log/libvirt are folders of the lab dir: its qemu.conf, domain definitions
and runtime files are ours alone, and a system libvirtd (if any) is not touched. Its socket is
``<lab dir>/libvirt/run/libvirt-sock``; the URI is ``qemu+unix:///system?socket=<that path>``.
"""

from __future__ import annotations

import contextlib
import grp
import pwd
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from orchestrator.errors import ConfigError
from orchestrator.procs import alive, terminate

LIBVIRTD_START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
UNSHARE = ("unshare", "--mount", "--propagation", "private", "--")
BOUND = ("etc/libvirt", "run/libvirt", "var/lib/libvirt", "var/cache/libvirt", "var/log/libvirt")
QEMU_CONF = """\
# The lab's qemu.conf (see LAB.md): QEMU runs as root, no relabelling, no cgroups, no virtlogd.
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
stdio_handler = "file"
cgroup_controllers = [ ]
"""


@dataclass(frozen=True)
class Libvirtd:
    root: Path  # <lab dir>/libvirt
    # e.g. ip netns exec NS: where libvirtd and its QEMUs run; its socket is a file, reachable from any
    exec_prefix: tuple[str, ...] = ()

    @property
    def socket(self) -> Path:
        return self.root / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.root / "libvirtd.pid"

    @property
    def log(self) -> Path:
        return self.root / "libvirtd.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if alive(pid, "libvirtd") else None

    def start(self) -> None:
        if self.pid() is not None and self.socket.exists():
            return
        ensure_qemu_user()
        for sub in BOUND:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "etc/libvirt/qemu.conf").write_text(QEMU_CONF)
        conf = self.root / "libvirtd.conf"
        conf.write_text(
            f'unix_sock_dir = "{self.root / "run"}"\n'
            'unix_sock_rw_perms = "0700"\n'
            'auth_unix_rw = "none"\n'
            'auth_unix_ro = "none"\n'
            f'log_outputs = "3:file:{self.log}"\n'
        )
        self.socket.unlink(missing_ok=True)
        binds = " && ".join(f"mkdir -p /{sub} && mount --bind {self.root / sub} /{sub}" for sub in BOUND)
        script = f"{binds} && exec libvirtd -d -f {conf} -p {self.pidfile}"
        with (self.root / "libvirtd.stderr").open("ab") as err:
            done = subprocess.run(
                [*self.exec_prefix, *UNSHARE, "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
                timeout=LIBVIRTD_START_TIMEOUT,
                check=False,
            )
        if done.returncode != 0:
            raise ConfigError(
                f"libvirtd did not start (exit {done.returncode}); {self.tail()}\n"
                "unshare --mount needs root with CAP_SYS_ADMIN; libvirtd comes with apt-get install "
                "libvirt-daemon libvirt-daemon-driver-qemu"
            )
        deadline = time.monotonic() + LIBVIRTD_START_TIMEOUT
        while not self.answers():
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"libvirtd started but {self.socket} did not answer within "
                    f"{LIBVIRTD_START_TIMEOUT:.0f} s; {self.tail()}"
                )
            time.sleep(0.1)

    def answers(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with self.connect():
                return True
        except ConfigError:
            return False

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        import libvirt

        libvirt.registerErrorHandler(lambda *_: None, None)
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise ConfigError(f"cannot connect to the lab's libvirtd at {self.uri}: {exc}") from exc
        try:
            yield conn
        finally:
            conn.close()

    def stop(self) -> None:
        pids = set(our_libvirtds(self.root))
        pid = self.pid()
        if pid is not None:
            pids.add(pid)
        for pid in sorted(pids):
            _terminate(pid, "libvirtd")
        self.pidfile.unlink(missing_ok=True)
        self.socket.unlink(missing_ok=True)

    def tail(self, lines: int = 15) -> str:
        text = ""
        for path in (self.root / "libvirtd.stderr", self.log):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        last = "\n".join(text.strip().splitlines()[-lines:])
        return f"last lines of {self.log} and libvirtd.stderr:\n{last}" if last else f"{self.log} is empty"


def ensure_qemu_user() -> None:
    """libvirtd refuses to start without a libvirt-qemu user and group, even when QEMU runs as root."""
    try:
        grp.getgrnam("libvirt-qemu")
    except KeyError:
        subprocess.run(["groupadd", "--system", "libvirt-qemu"], check=True, timeout=30)
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "-g",
                "libvirt-qemu",
                "-d",
                "/var/lib/libvirt",
                "-s",
                "/usr/sbin/nologin",
                "libvirt-qemu",
            ],
            check=True,
            timeout=30,
        )


@dataclass(frozen=True)
class VMSpec:
    domain: str
    name: str
    address: str  # with no prefix length
    gateway: str  # the guest's default route: the bridge, inside the lab's namespace
    tap: str
    mac: str
    kernel: Path
    initrd: Path
    disk: Path
    console: Path


def domain_xml(vm: VMSpec, *, memory_mib: int = 256) -> str:
    cmdline = f"console=ttyS0 quiet lab.ip={vm.address}/24 lab.gw={vm.gateway} lab.name={vm.name}"
    e = escape
    return f"""<domain type='qemu'>
  <name>{e(vm.domain)}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{e(str(vm.kernel))}</kernel>
    <initrd>{e(str(vm.initrd))}</initrd>
    <cmdline>{e(cmdline)}</cmdline>
  </os>
  <features>
    <acpi/>
    <tcg><tb-cache unit='MiB'>32</tb-cache></tcg>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{e(str(vm.disk))}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='ethernet'>
      <mac address='{vm.mac}'/>
      <target dev='{e(vm.tap)}' managed='no'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='{e(str(vm.console))}' append='on'/>
      <target port='0'/>
    </serial>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def start_domain(conn: Any, vm: VMSpec) -> None:
    """Define (or redefine) the domain and start it unless it already runs."""
    import libvirt

    try:
        dom = conn.lookupByName(vm.domain)
    except libvirt.libvirtError:
        dom = conn.defineXML(domain_xml(vm))
    if not dom.isActive():
        try:
            dom.create()
        except libvirt.libvirtError as exc:
            raise ConfigError(f"domain {vm.domain} did not start: {exc}; see {vm.console}") from exc


def domain_state(conn: Any, domain: str) -> str:
    import libvirt

    names = {
        libvirt.VIR_DOMAIN_RUNNING: "running",
        libvirt.VIR_DOMAIN_PAUSED: "paused",
        libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
        libvirt.VIR_DOMAIN_CRASHED: "crashed",
        libvirt.VIR_DOMAIN_BLOCKED: "blocked",
        libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
        libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
    }
    try:
        state, _ = conn.lookupByName(domain).state()
    except libvirt.libvirtError:
        return "missing"
    return names.get(state, f"state {state}")


def remove_domains(conn: Any) -> None:
    """Destroy and undefine every domain of this libvirtd (it runs nothing but the lab)."""
    import libvirt

    def remove(dom: Any) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            if dom.isActive():
                dom.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)

    # each destroy waits ~2 s for QEMU to exit: do them side by side
    domains = conn.listAllDomains()
    if domains:
        with ThreadPoolExecutor(max_workers=len(domains)) as pool:
            list(pool.map(remove, domains))


def stray_qemus(lab_dir: Path) -> list[int]:
    """QEMU processes still running one of our disks (a libvirtd that died leaves them behind)."""
    return _find(str(lab_dir / "vms").encode(), b"qemu-system", "qemu")


def _find(marker: bytes, program: bytes, comm_prefix: str) -> list[int]:
    """Live processes whose argv[0] names ``program`` and whose command line mentions ``marker``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        argv0 = cmdline.split(b"\0", 1)[0]
        if program in argv0 and marker in cmdline and alive(int(proc.name), comm_prefix):
            pids.append(int(proc.name))
    return pids


def our_libvirtds(root: Path) -> list[int]:
    """libvirtd processes started with a config under ``root`` (found even if the pidfile is gone)."""
    return _find(str(root).encode(), b"libvirtd", "libvirtd")


def kill_strays(lab_dir: Path) -> None:
    for pid in stray_qemus(lab_dir):
        _terminate(pid, "qemu")


def _terminate(pid: int, comm_prefix: str) -> None:
    """SIGTERM, bounded wait, SIGKILL: for one process we started, by its pid."""
    terminate(pid, comm_prefix, STOP_TIMEOUT)
