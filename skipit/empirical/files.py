"""Files a run writes: atomic replacement, so a reader sees the old file or the whole new one;
and the output directory: checked up front, locked while a run uses it, not left empty by a failure."""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import shlex
import socket
import sys
import tempfile
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # not POSIX: the lock falls back to the owner file alone
    fcntl = None

__all__ = [
    "atomic_write_text", "atomic_write_bytes", "prepare_output_dir", "output_lock", "cleanup_on_failure",
    "output_directory", "LOCK_NAME",
]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write the bytes ``data`` to ``path`` so readers see the old file or the whole new one, never half.

    The file gets the permissions ``open`` would give a new file (``0o666 & ~umask``), not
    the owner-only ``0o600`` of the temporary file it is renamed from.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------
# the output directory of a run: checked up front, locked while in use, not left empty
# --------------------------------------------------------------------------------------

LOCK_NAME = ".skipit.lock"


def _missing_ancestors(path):
    """``path`` and its ancestors that do not exist yet, deepest first (absolute paths)."""
    missing = []
    current = os.path.abspath(os.fspath(path))
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return missing


def prepare_output_dir(path: str | os.PathLike[str], *, what: str = "--out") -> str:
    """Check that ``path`` can hold a run's output, create it, and return its absolute path.

    Raises :class:`~skipit.errors.SkipitError` (one line, naming ``what``) when ``path`` is an
    existing file, lies under a file, or is not writable (a probe file is created and
    removed, so read-only file systems, permissions and ACLs are all caught). Nothing is
    created when the check fails.
    """
    from skipit.errors import SkipitError

    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not os.path.isdir(path):
        raise SkipitError(f"{what} {path} is an existing file, not a directory; give a directory path")
    missing = _missing_ancestors(path)
    existing = os.path.dirname(missing[-1]) if missing else path
    if not os.path.isdir(existing):
        raise SkipitError(f"{what} {path} lies under {existing}, which is a file, not a directory; "
                          "give a directory path")
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".skipit-write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        for directory in missing:
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        reason = error.strerror or type(error).__name__
        raise SkipitError(f"{what} {path} is not writable ({reason}); choose a directory you can write to") from None
    return path


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_lock(path):
    try:
        with open(path, encoding="utf-8") as fh:
            owner = json.loads(fh.read() or "null")
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _describe(owner):
    if not owner:
        return "another skipit run (its lock file names no owner yet)"
    text = f"another skipit run (pid {owner.get('pid')} on host {owner.get('host')}, started {owner.get('started')}"
    if owner.get("command"):
        text += f", command: {owner['command']}"
    return text + ")"


def _stale(owner):
    """True if ``owner`` (a lock's content) is a process of this host that no longer runs."""
    return (bool(owner) and owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int)
            and not _pid_alive(owner["pid"]))


class _FlockUnsupported(Exception):
    pass


def _flock(fd):
    """True if the exclusive lock was taken, False if another open file holds it."""
    if fcntl is None:
        raise _FlockUnsupported()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise _FlockUnsupported() from error
    return True


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str], *, what: str = "--out", command: str | None = None) -> Iterator[str]:
    """Hold the lock of the output directory ``path`` for the duration of the ``with`` block.

    The lock is the file ``path/.skipit.lock``, holding the owner's pid, host, start time
    (UTC) and command line, and an exclusive ``fcntl.flock`` on it, so two runs on one
    directory never interleave: the second raises :class:`~skipit.errors.SkipitError` naming
    the first (pid, host, start, command). A run killed with ``kill -9`` leaves the file but
    not the flock (the kernel drops it), so the next run takes the lock over; where the file
    system has no flock, a lock file whose pid no longer runs on this host is taken over
    and any other one refuses. The file is removed when the block ends.
    """
    from skipit.errors import SkipitError

    directory = os.path.abspath(os.fspath(path))
    lock_path = os.path.join(directory, LOCK_NAME)
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "command": (command if command is not None else shlex.join(sys.argv))[:300]}
    fd = None
    for _ in range(20):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise SkipitError(f"{what} {directory}: cannot open the lock file {LOCK_NAME} "
                              f"({error.strerror or type(error).__name__}); run prepare_output_dir first, "
                              "or check the directory's permissions") from None
        try:
            locked = _flock(fd)
        except _FlockUnsupported:
            holder = _read_lock(lock_path)
            locked = holder is None or _stale(holder)
        if not locked:
            holder = _read_lock(lock_path)
            os.close(fd)
            raise SkipitError(f"{what} {directory} is in use by {_describe(holder)}; wait for it to finish "
                              f"or choose another {what}")
        # The previous owner may have removed the file between our open and our flock: then
        # we hold a lock on an unlinked file, and must lock the file now at the path.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
        fd = None
    if fd is None:
        raise SkipitError(f"{what} {directory}: could not take the lock {lock_path}; another run keeps replacing it")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode("utf-8"), 0)
        os.fsync(fd)
        yield lock_path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)


@contextlib.contextmanager
def cleanup_on_failure(path: str | os.PathLike[str]) -> Iterator[None]:
    """Remove ``path`` (and the ancestors created with it) if the ``with`` block raises and left it empty.

    Only directories that did not exist when the block was entered are removed, and only
    when they hold nothing (or nothing but a lock file): a failed run leaves no empty
    ``--out`` behind, while a directory holding resumable results, or one the user made,
    stays. The exception is re-raised.
    """
    missing = _missing_ancestors(path)
    try:
        yield
    except BaseException:
        for directory in missing:
            try:
                if os.listdir(directory) == [LOCK_NAME]:
                    os.unlink(os.path.join(directory, LOCK_NAME))
                os.rmdir(directory)
            except OSError:
                break
        raise


@contextlib.contextmanager
def output_directory(path: str | os.PathLike[str], *, what: str = "--out", command: str | None = None) -> Iterator[str]:
    """The output directory of a run, from start to end: yields its absolute path.

    In order: :func:`cleanup_on_failure`, :func:`prepare_output_dir` (the up-front checks,
    then creation), :func:`output_lock`. Enter it before any model work.
    """
    with cleanup_on_failure(path):
        directory = prepare_output_dir(path, what=what)
        with output_lock(directory, what=what, command=command):
            yield directory
