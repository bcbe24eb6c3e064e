"""The lab's application: build the C server, make release artifacts, lay out an app dir.

The same app dir runs on loopback hosts (127.0.0.x, one app dir each) and in the lab's guests (/app)::

    <app_dir>/bin/appserver      static binary (the guest has no libc)
    <app_dir>/bin/appctl         start|stop|restart [--hard]|status
    <app_dir>/bin/install        install [--hard] ARTIFACT.tar.gz
    <app_dir>/app.env            APP_ADDRESS, APP_PORT
    <app_dir>/releases/<v>/      VERSION, app.conf (delay_ms=N), BROKEN when the release is broken
    <app_dir>/current -> releases/<v>
    <app_dir>/app.pid, app.log   written while it runs

``python -m orchestrator.lab.app artifacts DIR`` writes the artifacts the lab playbooks upload.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from orchestrator.errors import ConfigError

SOURCE_DIR = Path(__file__).parent / "app"
SCRIPTS = ("appctl", "install")


def default_build_dir() -> Path:
    return Path(os.environ.get("ORCH_LAB_DIR", "/var/lib/orchestrator-lab")) / "build"


def build_app(out: Path) -> Path:
    """Compile appserver.c into ``out`` (static), once per source version; return the binary's path."""
    source = SOURCE_DIR / "appserver.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    binary = out / f"appserver-{digest}"
    if binary.exists():
        return binary
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".appserver-{digest}.{os.getpid()}"
    cmd = ["gcc", "-O2", "-static", "-pthread", "-Wall", "-o", str(tmp), str(source)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError as exc:
        raise ConfigError(
            "gcc is not installed; the lab app needs it: apt-get install gcc libc6-dev"
        ) from exc
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"building the lab app failed ({' '.join(cmd)}):\n{done.stderr.strip()[-2000:]}\n"
            "a static build needs libc6-dev (apt-get install libc6-dev)"
        )
    tmp.replace(binary)  # atomic: a concurrent build of the same source just overwrites it
    return binary


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0  # byte-identical artifacts from run to run, so they can be committed
    tar.addfile(info, io.BytesIO(data))


def make_artifact(version: str, out_dir: Path, *, broken: bool = False, delay_ms: int = 150) -> Path:
    """Write ``app-<version>.tar.gz`` (or ``app-<version>-broken.tar.gz``) into ``out_dir``."""
    if not version or not all(c.isalnum() or c in "._-" for c in version):
        raise ConfigError(f"bad app version {version!r}: use letters, digits, '.', '_' and '-' only")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"app-{version}{'-broken' if broken else ''}.tar.gz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, "VERSION", f"{version}\n".encode())
        _add(tar, "app.conf", f"delay_ms={delay_ms}\n".encode())
        if broken:
            _add(tar, "BROKEN", b"this release fails its health check on purpose\n")
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    path.write_bytes(packed.getvalue())
    return path


def install_app_dir(
    app_dir: Path,
    version: str,
    *,
    port: int,
    address: str,
    delay_ms: int = 150,
    binary: Path | None = None,
) -> None:
    """Lay out a complete app dir with ``version`` installed and current (the app is not started)."""
    binary = binary or build_app(default_build_dir())
    bin_dir = app_dir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(binary, bin_dir / "appserver")
    (bin_dir / "appserver").chmod(0o755)
    for name in SCRIPTS:
        shutil.copyfile(SOURCE_DIR / name, bin_dir / name)
        (bin_dir / name).chmod(0o755)
    (app_dir / "app.env").write_text(f"APP_ADDRESS={address}\nAPP_PORT={port}\n")
    release = app_dir / "releases" / version
    release.mkdir(parents=True, exist_ok=True)
    (release / "VERSION").write_text(f"{version}\n")
    (release / "app.conf").write_text(f"delay_ms={delay_ms}\n")
    current = app_dir / "current"
    if current.is_symlink() or current.exists():
        current.unlink()
    current.symlink_to(f"releases/{version}")


def appctl(app_dir: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``<app_dir>/bin/appctl ARGS`` (start, stop, restart [--hard], status) as a host would."""
    return subprocess.run(
        [str(app_dir / "bin" / "appctl"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def write_lab_artifacts(out_dir: Path) -> list[Path]:
    """The artifacts playbooks/lab-*.yaml upload: a good v2 and a broken v3."""
    return [make_artifact("2", out_dir), make_artifact("3", out_dir, broken=True)]


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "artifacts":
        print("usage: python -m orchestrator.lab.app artifacts OUT_DIR", file=sys.stderr)
        return 2
    for path in write_lab_artifacts(Path(argv[1])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
