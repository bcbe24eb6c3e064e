"""The lab's guest image, made from Debian packages only (apt-get download + dpkg-deb -x, no install).

A guest is a Debian kernel booted directly with an initramfs: busybox-static, dropbear (with the
libraries ``ldd`` lists), openssh's sftp-server at /usr/lib/sftp-server, the virtio and ext4 modules,
and app/guest-init.sh as /init. Per VM, a small cpio appended to the shared one carries the host key
and authorized_keys, and an ext4 app disk (qcow2, so internal snapshots capture disk and memory) holds
the app dir with v1 installed. Everything is cached under ``<lab dir>/image``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.lab.app import SOURCE_DIR, build_app, install_app_dir

KERNEL_META = "linux-image-amd64"
# dropbear's libraries come along so that ldd resolves them from the extracted tree, not the host.
PACKAGES = (
    "busybox-static",
    "dropbear-bin",
    "libtomcrypt1",
    "libtommath1",
    "libgmp10",
    "zlib1g",
    "libcrypt1",
    "openssh-sftp-server",
)
# Roots only: their dependencies are read from each module's .modinfo and loaded first.
MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "virtio_rng", "crc32c_generic", "ext4")
INIT_SCRIPT = SOURCE_DIR / "guest-init.sh"
GUEST_APP_PORT = 8080
APP_DISK_SIZE = 64 * 1024 * 1024
IMAGE_FORMAT = "2"  # bump to rebuild every cached image after a change in how it is made

ETC_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "etc/shadow": "root:*:19000:0:99999:7:::\n",  # '*': no password login, but not "locked" ('!')
    "etc/group": "root:x:0:\n",
    "etc/shells": "/bin/sh\n",
    # busybox init: no gettys, just reap orphans; the VM is destroyed, never shut down from inside.
    "etc/inittab": "::ctrlaltdel:/sbin/reboot\n::shutdown:/bin/umount -a -r\n",
}


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    base_cpio: Path
    tree: Path  # the extracted packages (dropbearkey runs from here, on the host)

    def dropbearkey(self, *args: str) -> str:
        env = dict(os.environ, LD_LIBRARY_PATH=str(self.tree / "usr/lib/x86_64-linux-gnu"))
        done = _run([str(self.tree / "usr/bin/dropbearkey"), *args], env=env)
        return done


def lab_dir() -> Path:
    return Path(os.environ.get("ORCH_LAB_DIR", "/var/lib/orchestrator-lab"))


def _run(
    cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> str:
    try:
        done = subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{cmd[0]} is not installed; the lab needs it (see the Makefile's APT_PACKAGES)"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(f"{' '.join(cmd)} did not finish within {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise ConfigError(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr.strip()[-1500:]}")
    return done.stdout


def _kernel_dependency() -> str | None:
    try:
        out = _run(["apt-cache", "depends", KERNEL_META])
    except ConfigError:
        return None
    found = re.search(r"Depends: (linux-image-[0-9][^\s]*)", out)
    return found.group(1) if found else None


def kernel_package() -> str:
    """The versioned kernel package behind linux-image-amd64 (e.g. linux-image-6.1.0-57-amd64)."""
    package = _kernel_dependency()
    if package is None:  # a fresh machine has no package lists yet
        _run(["apt-get", "update", "-qq"], timeout=600)
        package = _kernel_dependency()
    if package is None:
        raise ConfigError(
            f"apt-cache does not know {KERNEL_META} even after 'apt-get update'; "
            "the lab downloads its guest kernel from the Debian archive: check /etc/apt/sources.list"
        )
    return package


def download(packages: list[str], debs: Path) -> list[Path]:
    """``apt-get download`` each package once into ``debs``; returns the .deb files."""
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        try:
            _run(["apt-get", "download", *missing], cwd=debs)
        except ConfigError as exc:
            raise ConfigError(
                f"cannot download the guest's Debian packages {missing} into {debs}: {exc}\n"
                "run 'apt-get update' and check that the Debian mirror is reachable"
            ) from exc
    return [next(iter(sorted(debs.glob(f"{p}_*.deb")))) for p in packages]


def module_order(modules_dir: Path, roots: tuple[str, ...]) -> list[Path]:
    """Module files in load order: every module after the modules it depends on."""
    by_name = {ko.name[:-3].replace("-", "_"): ko for ko in modules_dir.rglob("*.ko")}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        if name not in by_name:
            raise ConfigError(f"kernel module {name} is not in {modules_dir} (is it built in, or renamed?)")
        info = re.search(rb"(?:^|\x00)depends=([^\x00]*)", by_name[name].read_bytes())
        for dep in info.group(1).decode().split(",") if info else []:
            if dep:
                visit(dep.replace("-", "_"))
        order.append(by_name[name])

    for root in roots:
        visit(root)
    return order


def _libraries(binaries: list[Path], tree: Path) -> dict[str, Path]:
    """Every library the binaries need, as guest path -> host file."""
    env = dict(os.environ, LD_LIBRARY_PATH=str(tree / "usr/lib/x86_64-linux-gnu"))
    libs: dict[str, Path] = {}
    for binary in binaries:
        for line in _run(["ldd", str(binary)], env=env).splitlines():
            line = line.strip()
            if "not found" in line:
                raise ConfigError(f"{binary} needs a library nobody provides: {line}")
            resolved = re.match(r"(\S+) => (/\S+)", line)
            if resolved:
                libs[f"lib/x86_64-linux-gnu/{resolved.group(1)}"] = Path(resolved.group(2))
            elif line.startswith("/"):
                loader = line.split()[0]
                libs[loader.lstrip("/")] = Path(loader)
    return libs


def _cpio(src: Path, out: Path) -> None:
    # -R 0:0: everything in the guest belongs to root, whoever built it.
    files = subprocess.run(
        ["find", ".", "-mindepth", "1"], cwd=src, capture_output=True, check=True, timeout=60
    ).stdout
    with out.open("wb") as fh:
        done = subprocess.run(
            ["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"],
            cwd=src,
            input=files,
            stdout=fh,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
    if done.returncode != 0:
        raise ConfigError(f"cpio of {src} into {out} failed: {done.stderr.decode(errors='replace')[-1000:]}")


def _image_key(kernel_pkg: str, debs: list[Path]) -> str:
    h = hashlib.sha256(IMAGE_FORMAT.encode())
    h.update(INIT_SCRIPT.read_bytes())
    h.update(repr((kernel_pkg, sorted(d.name for d in debs), MODULES, ETC_FILES)).encode())
    return h.hexdigest()[:12]


def build_image(state: Path | None = None) -> GuestImage:
    """The guest kernel and base initramfs, built once and cached under ``<state>/image``."""
    root = (state or lab_dir()) / "image"
    kernel_pkg = kernel_package()
    debs = download([kernel_pkg, *PACKAGES], root / "debs")
    key = _image_key(kernel_pkg, debs)
    out = root / key
    image = GuestImage(kernel=out / "vmlinuz", base_cpio=out / "base.cpio", tree=out / "tree")
    if (out / "ready").exists():
        return image
    shutil.rmtree(out, ignore_errors=True)
    tree = image.tree
    tree.mkdir(parents=True)
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(tree)])
    kver = kernel_pkg.removeprefix("linux-image-")
    shutil.copyfile(tree / f"boot/vmlinuz-{kver}", image.kernel)

    staging = out / "initramfs"
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "lib/modules",
        "etc/lab",
        "etc/dropbear",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "var/log",
        "var/run",
        "app",
    ):
        (staging / d).mkdir(parents=True, exist_ok=True)
    (staging / "tmp").chmod(0o1777)
    os.mknod(staging / "dev/console", 0o600 | stat.S_IFCHR, os.makedev(5, 1))
    os.mknod(staging / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    shutil.copy2(tree / "bin/busybox", staging / "bin/busybox")
    (staging / "bin/sh").symlink_to("busybox")  # for /init's #! line; init installs the other applets
    shutil.copy2(tree / "usr/sbin/dropbear", staging / "usr/sbin/dropbear")
    shutil.copy2(
        tree / "usr/lib/openssh/sftp-server", staging / "usr/lib/sftp-server"
    )  # where dropbear looks
    for guest_path, host_file in _libraries(
        [tree / "usr/sbin/dropbear", tree / "usr/lib/openssh/sftp-server"], tree
    ).items():
        (staging / guest_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(host_file.resolve(), staging / guest_path)
        (staging / guest_path).chmod(0o755)
    names = []
    for ko in module_order(tree / f"lib/modules/{kver}", MODULES):
        name = ko.name[:-3]
        shutil.copyfile(ko, staging / f"lib/modules/{name}.ko")
        names.append(name)
    (staging / "etc/lab/modules").write_text("\n".join(names) + "\n")
    for rel, text in ETC_FILES.items():
        (staging / rel).write_text(text)
    (staging / "etc/shadow").chmod(0o600)
    shutil.copyfile(INIT_SCRIPT, staging / "init")
    (staging / "init").chmod(0o755)
    _cpio(staging, image.base_cpio)
    shutil.rmtree(staging)
    (out / "ready").write_text(kernel_pkg + "\n")
    return image


def make_host_key(image: GuestImage, key: Path) -> str:
    """Create a dropbear ed25519 host key (once) and return its public line ``ssh-ed25519 AAAA...``."""
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        image.dropbearkey("-t", "ed25519", "-f", str(key))
    for line in image.dropbearkey("-y", "-f", str(key)).splitlines():
        if line.startswith("ssh-"):
            return " ".join(line.split()[:2])
    raise ConfigError(f"dropbearkey -y -f {key} printed no public key")


def make_initrd(image: GuestImage, vm_dir: Path, *, host_key: Path, authorized_keys: str) -> Path:
    """The VM's initrd: the shared base cpio followed by a small cpio with this VM's keys."""
    staging = vm_dir / "cpio"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "etc/dropbear").mkdir(parents=True)
    (staging / "root/.ssh").mkdir(parents=True)
    (staging / "root").chmod(0o700)
    (staging / "root/.ssh").chmod(0o700)
    shutil.copyfile(host_key, staging / "etc/dropbear/dropbear_ed25519_host_key")
    (staging / "etc/dropbear/dropbear_ed25519_host_key").chmod(0o600)
    (staging / "root/.ssh/authorized_keys").write_text(authorized_keys)
    (staging / "root/.ssh/authorized_keys").chmod(0o600)
    own = vm_dir / "vm.cpio"
    _cpio(staging, own)
    shutil.rmtree(staging)
    initrd = vm_dir / "initrd.img"
    with initrd.open("wb") as out:
        for part in (image.base_cpio, own):
            with part.open("rb") as src:
                shutil.copyfileobj(src, out)
    return initrd


def make_app_disk(vm_dir: Path, *, port: int = GUEST_APP_PORT, build_dir: Path | None = None) -> Path:
    """An ext4 disk (qcow2) holding /app with v1 installed, made without mounting anything."""
    src = vm_dir / "appsrc"
    shutil.rmtree(src, ignore_errors=True)
    binary = build_app(build_dir or lab_dir() / "build")
    install_app_dir(src, "1", port=port, address="0.0.0.0", binary=binary)
    raw = vm_dir / "app.raw"
    raw.unlink(missing_ok=True)
    with raw.open("wb") as fh:
        fh.truncate(APP_DISK_SIZE)
    _run(["mkfs.ext4", "-q", "-F", "-L", "app", "-d", str(src), str(raw)])
    disk = vm_dir / "app.qcow2"
    disk.unlink(missing_ok=True)
    _run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(disk)])
    raw.unlink()
    shutil.rmtree(src)
    return disk
