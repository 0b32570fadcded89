"""Filesystems a test mounts to put the prediction log on a disk that fills up or is read-only.

`mount` needs root with CAP_SYS_ADMIN. As root, file permissions do not stop a write (chmod is no test of a read-only
log): a read-only mount does, a size-limited tmpfs fills up, and a loop-mounted ext4 turns read-only under open files
when it meets an error. Where mounting is not allowed, the test is skipped and says why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

COMMAND_TIMEOUT_S = 300


def _mount(*args: str, setting_up: bool = True) -> None:
    """`mount args`; a refusal skips a test still setting up its volume, and fails one that had it mounted."""
    result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT_S)
    if result.returncode != 0:
        refused = f"`mount {' '.join(args)}` failed: {result.stderr.strip()}"
        if setting_up:
            pytest.skip(f"{refused} (mounting needs root with CAP_SYS_ADMIN)")
        pytest.fail(refused)


def _unmount(path: Path) -> None:
    # lazy: the service under test may still hold the log open; the mount goes once it lets go
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False, timeout=COMMAND_TIMEOUT_S)


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (`mount -o size=...`) at `path`."""
    path.mkdir(parents=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        _unmount(path)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no block left; remove it to give the space back."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(descriptor, b"\0" * 65536):
            pass
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(descriptor)
    return filler


@contextlib.contextmanager
def read_only_view(source: Path, path: Path) -> Iterator[Path]:
    """`source` seen read-only at `path` (a read-only bind mount), until `make_writable(path)`."""
    path.mkdir(parents=True)
    _mount("--bind", str(source), str(path))
    try:
        _mount("-o", "remount,ro,bind", str(path))
        yield path
    finally:
        _unmount(path)


def make_writable(path: Path) -> None:
    """The bind mount at `path` writable again (possible while nothing holds a file open for writing there)."""
    _mount("-o", "remount,rw,bind", str(path), setting_up=False)


@contextlib.contextmanager
def ext4_volume(path: Path, size_mb: int = 32) -> Iterator[Path]:
    """A loop-mounted ext4 filesystem at `path` that turns read-only on an error (`errors=remount-ro`), as a disk
    that fails does; `fail_volume(path)` raises one."""
    image = path.with_name(path.name + ".img")
    with image.open("wb") as out:
        out.truncate(size_mb * 1024 * 1024)
    made = subprocess.run(["mkfs.ext4", "-q", str(image)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"mkfs.ext4 failed: {made.stderr.strip()}")
    path.mkdir(parents=True)
    _mount("-o", "loop,errors=remount-ro", str(image), str(path))
    try:
        yield path
    finally:
        _unmount(path)
        image.unlink()


def fail_volume(path: Path) -> None:
    """Raise a filesystem error on the ext4 volume at `path` (the kernel's test hook): it turns read-only at once,
    files open for writing included."""
    device = next(
        line.split()[0] for line in Path("/proc/mounts").read_text().splitlines() if line.split()[1] == str(path)
    )
    trigger = Path("/sys/fs/ext4") / Path(device).name / "trigger_fs_error"
    if not trigger.exists():
        pytest.skip(f"this kernel has no {trigger}")
    trigger.write_text("a test of a failing disk\n")
