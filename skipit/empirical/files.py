"""Files a run writes: atomic replacement, so a reader sees the old file or the whole new one."""

from __future__ import annotations

import os
import tempfile

__all__ = ["atomic_write_text", "atomic_write_bytes"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path, data):
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
