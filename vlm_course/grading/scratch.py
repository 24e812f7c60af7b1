"""The scratch folder of one graded submission, handled without following what the worker planted.

Everything the worker may write lies in one scratch folder. In namespace mode it is a size-limited
tmpfs with ``nosymfollow``, mounted in the trusted test process's own mount namespace: a symbolic
link the worker leaves there is never followed by the trusted side (not even by test code that
writes ``tmp_path / "x"``), no hard link can reach a host file (another file system), and the whole
folder disappears with the namespace when grading ends.

The trusted side creates each folder a worker needs, owned by the worker's uid from the start
(``new_dir``), so it never changes the ownership of anything afterwards; ``remove_tree`` deletes a
tree the worker filled (process mode) without recursion and without following links.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
from pathlib import Path

MS_NOSUID, MS_NODEV, MS_NOSYMFOLLOW = 2, 4, 256
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def mount_tmpfs(target: Path, size_mb: int, mode: int = 0o755) -> None:
    """Mount a size-limited tmpfs (nosuid, nodev, nosymfollow) on ``target``; OSError if refused."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
    options = f"size={max(1, int(size_mb))}m,mode={mode:o}".encode()
    flags = MS_NOSUID | MS_NODEV | MS_NOSYMFOLLOW
    if libc.mount(b"vlm-scratch", os.fsencode(target), b"tmpfs", flags, options) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot mount the scratch tmpfs on {target}: {os.strerror(err)}")


MS_REC, MS_PRIVATE = 16384, 1 << 18


def make_mounts_private() -> None:
    """Make every mount of this mount namespace private (``mount --make-rprivate /``), so that what is
    mounted here never propagates to the machine; OSError if refused."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot make the mounts private: {os.strerror(err)}")


def new_dir(parent: Path, name: str, uid: int | None = None, mode: int = 0o700) -> Path:
    """Create ``parent/name`` (fresh: it must not exist) owned by ``uid`` from the start; returns its path.

    ``parent`` must be a folder the worker cannot write, so nobody can race the creation."""
    pfd = os.open(parent, DIR_FLAGS)
    try:
        os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, DIR_FLAGS, dir_fd=pfd)
        try:
            if uid is not None and os.geteuid() == 0:
                os.fchown(fd, uid, uid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    finally:
        os.close(pfd)
    return parent / name


def write_file(folder: Path, name: str, data: bytes, uid: int | None = None, mode: int = 0o600) -> None:
    """Create ``folder/name`` (a new file, never through a link) with ``data``, owned by ``uid``."""
    dfd = os.open(folder, DIR_FLAGS)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if uid is not None and os.geteuid() == 0:
                os.fchown(f.fileno(), uid, uid)
            os.fchmod(f.fileno(), mode)
    finally:
        os.close(dfd)


def open_to_workers(root: Path, max_entries: int = 20000) -> int:
    """Let the workers read what the trusted side wrote under ``root`` (files some libraries create
    0600, like model shards written through ``mkstemp``): add read (and, for folders, search)
    permission for others to every entry the trusted side owns; returns how many changed.

    It only ever acts through file descriptors opened relative to a folder it already holds, with
    ``O_NOFOLLOW``, and descends only into folders owned by this process's user, which the worker
    cannot create: a worker's links, FIFOs, files and folders are never opened, let alone changed.
    At most ``max_entries`` entries are looked at, however many the worker made."""
    me = os.geteuid()
    changed = seen = 0
    try:
        stack = [os.open(root, DIR_FLAGS)]
    except OSError:
        return 0
    while stack:
        dfd = stack.pop()
        try:
            with os.scandir(dfd) as entries:
                names = []
                for entry in entries:
                    seen += 1
                    if seen > max_entries:
                        break
                    names.append(entry.name)
            for name in names:
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                    if st.st_uid != me or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                        continue
                    is_dir = stat.S_ISDIR(st.st_mode)
                    flags = DIR_FLAGS if is_dir else os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                    fd = os.open(name, flags, dir_fd=dfd)
                except OSError:
                    continue
                try:
                    st = os.fstat(fd)  # the entry may have been swapped meanwhile: decide on what was opened
                    want = st.st_mode | (0o055 if stat.S_ISDIR(st.st_mode) else 0o044)
                    if st.st_uid == me and (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                        if stat.S_IMODE(want) != stat.S_IMODE(st.st_mode):
                            os.fchmod(fd, stat.S_IMODE(want))
                            changed += 1
                        if stat.S_ISDIR(st.st_mode) and seen <= max_entries:
                            stack.append(fd)
                            fd = -1
                finally:
                    if fd >= 0:
                        os.close(fd)
        finally:
            os.close(dfd)
    return changed


class RemovalError(OSError):
    """A tree changed under ``remove_tree`` in a way that makes going on unsafe."""


def remove_tree(path: Path) -> None:
    """Delete ``path`` and everything in it, however deep, without recursion or following links.

    It walks down one folder at a time through file descriptors (``O_NOFOLLOW``), deletes what it
    finds, and climbs back through ``..`` only after checking that ``..`` is the very folder it came
    from (device and inode), so a folder moved elsewhere meanwhile stops it instead of leading it
    out of the tree. Only names are kept per level, so a chain of thousands of folders costs no
    stack and few descriptors."""
    try:
        fd = os.open(path, DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            os.unlink(path)
            return
        raise
    trail: list[tuple[str, int, int]] = []  # (name of the folder we are in, device and inode of its parent)
    try:
        while True:
            child = None
            for name in os.listdir(fd):
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    os.unlink(name, dir_fd=fd)
                elif child is None:
                    child = name
            if child is not None:
                here = os.fstat(fd)
                sub = os.open(child, DIR_FLAGS, dir_fd=fd)
                os.fchmod(sub, 0o700)  # a worker may have left it unreadable or unwritable
                os.close(fd)
                fd = sub
                trail.append((child, here.st_dev, here.st_ino))
                continue
            if not trail:
                break
            name, dev, ino = trail.pop()
            parent = os.open("..", DIR_FLAGS, dir_fd=fd)
            st = os.fstat(parent)
            os.close(fd)
            fd = parent
            if (st.st_dev, st.st_ino) != (dev, ino):
                raise RemovalError(errno.EBUSY, f"a folder in {path} was moved while it was being removed")
            os.rmdir(name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(path)


def nosymfollow_supported() -> bool:
    """Linux 5.10+ knows MS_NOSYMFOLLOW (older kernels would ignore or refuse it)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 10)
