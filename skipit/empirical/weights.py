"""Model weights: a fingerprint that changes when any weight does, and up-front checks of weight files.

* :func:`weights_fingerprint` hashes *every* byte: the names and contents of the
  ``.safetensors`` files of a local checkpoint directory (streamed SHA-256 of each whole
  file, cached per file by ``(path, device, inode, size, mtime, ctime)``, so a file
  rewritten or renamed into place is hashed again), or
  every tensor of an in-memory model (name, dtype, shape and raw bytes of its state dict).
  A sample of values per tensor (what certify used before) misses a change in the middle
  of a tensor; this does not.
* :func:`check_weight_files` reads only the safetensors headers (never unpickles anything)
  and refuses, in one line and before any model work, a truncated file, a missing shard,
  or a checkpoint that holds only pickled weights (``pytorch_model.bin``, ``.pt``, ``.pth``).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["weights_fingerprint", "check_weight_files", "parameter_tensors", "PICKLED_SUFFIXES"]

PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_CHUNK = 1 << 22
_FILE_HASHES: dict[tuple[str, int, int, int, int, int], str] = {}

# Bytes per element of the dtypes safetensors writes (its format spec).
_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "U16": 2, "I16": 2,
             "F16": 2, "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8}


def _file_sha256(path):
    stat = os.stat(path)
    # the inode and ctime too: a file renamed into place (a swap of two shards written in the
    # same clock tick) has the old path, size and mtime but other bytes
    key = (os.path.realpath(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def _safetensors_files(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".safetensors"))


def weights_fingerprint(model_or_dir: torch.nn.Module | str | os.PathLike[str]) -> str:
    """SHA-256 (64 hex digits) of all the weights; any changed byte of any weight changes it.

    ``model_or_dir`` is a checkpoint directory (str or path: its ``*.safetensors`` files,
    by name and content) or a ``torch.nn.Module`` (every entry of its ``state_dict``: name,
    dtype, shape, bytes, in order; tensors are copied to the host one at a time). The two
    kinds of fingerprint are different hashes and are never equal to each other: compare
    like with like. Weights accelerate offloaded (on the ``meta`` device) are read from its
    offload store; a ``meta`` weight with no stored value raises.
    """
    from skipit.errors import SkipitError

    if isinstance(model_or_dir, (str, os.PathLike)):
        directory = os.fspath(model_or_dir)
        if not os.path.isdir(directory):
            raise SkipitError(f"weights_fingerprint needs a checkpoint directory, got {directory!r}, "
                              "which is not a directory")
        names = _safetensors_files(directory)
        if not names:
            raise SkipitError(f"{directory} holds no .safetensors files to fingerprint")
        digest = hashlib.sha256(b"skipit-weights-files/1\0")
        for name in names:
            digest.update(f"{name}\0{_file_sha256(os.path.join(directory, name))}\0".encode())
        return digest.hexdigest()
    return _tensors_sha256(model_or_dir)


def parameter_tensors(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of every parameter with its values, also under accelerate's offload.

    An offloaded parameter sits on the ``meta`` device (no values) until its module runs; its
    values are read from the offload store of the module's accelerate hook (the CPU state
    dict, or a memory map of the disk file: reading a few values loads no more)."""
    for module_name, module in model.named_modules():
        weights = getattr(getattr(module, "_hf_hook", None), "weights_map", None)
        for name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if param.device.type == "meta" and weights is not None and name in weights:
                yield full, weights[name]
            else:
                yield full, param


def _tensors_sha256(model):
    import torch

    from skipit.errors import SkipitError

    digest = hashlib.sha256(b"skipit-weights-tensors/1\0")
    offloaded = None
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=False).items():
            if tensor.device.type == "meta":
                if offloaded is None:  # accelerate's offload store holds the values (device_map)
                    offloaded = dict(parameter_tensors(model))
                value = offloaded.get(name)
                if value is None or value.device.type == "meta":
                    raise SkipitError(f"weight {name} is on the meta device (offloaded); fingerprint the "
                                      "checkpoint directory instead")
                tensor = torch.as_tensor(value)
            digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
            flat = tensor.detach().reshape(-1)
            if flat.numel():
                data = flat.contiguous().view(torch.uint8).cpu().numpy()
                digest.update(memoryview(data))
    return digest.hexdigest()


def _check_safetensors(path):
    """One-line reason why the safetensors file ``path`` is broken, or None if its header holds."""
    size = os.path.getsize(path)
    name = os.path.basename(path)
    if size < 8:
        return f"{name} is truncated: {size} bytes, fewer than the 8 of a safetensors header length"
    with open(path, "rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        if 8 + header_len > size:
            return (f"{name} is truncated: its header says {header_len} header bytes, but the file has "
                    f"{size - 8} after the length")
        try:
            header = json.loads(fh.read(header_len))
        except ValueError:
            return f"{name} is not a safetensors file: its {header_len}-byte header is not JSON"
    if not isinstance(header, dict):
        return f"{name} is not a safetensors file: its header is not a JSON object"
    data_len = size - 8 - header_len
    for tensor, info in header.items():
        if tensor == "__metadata__":
            continue
        try:
            begin, end = (int(v) for v in info["data_offsets"])
            count = 1
            for dim in info["shape"]:
                count *= int(dim)
        except (KeyError, TypeError, ValueError):
            return f"{name} is not a safetensors file: tensor {tensor!r} has no valid data_offsets/shape"
        if end > data_len:
            return (f"{name} is truncated: tensor {tensor!r} ends at data byte {end}, but the file holds "
                    f"{data_len} data bytes")
        itemsize = _ITEMSIZE.get(str(info.get("dtype")))
        if not 0 <= begin <= end or (itemsize is not None and end - begin != count * itemsize):
            return (f"{name} is corrupt: tensor {tensor!r} of shape {info['shape']} and dtype {info.get('dtype')} "
                    f"spans bytes [{begin}, {end})")
    return None


def check_weight_files(directory: str | os.PathLike[str]) -> list[str]:
    """Check a local checkpoint's weight files before any model work; return the safetensors paths.

    Refuses with :class:`~skipit.errors.SkipitError` (one line): a directory with pickled
    weights only (``*.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``, ``*.pkl``: skipit never
    unpickles), a shard named in ``model.safetensors.index.json`` that is missing, and a
    safetensors file whose header is cut off or names data beyond the end of the file
    (a truncated download). Reads the headers only.
    """
    from skipit.errors import SkipitError

    directory = os.fspath(directory)
    names = sorted(os.listdir(directory))
    weights = _safetensors_files(directory)
    for index in (n for n in names if n.endswith(".safetensors.index.json")):
        try:
            with open(os.path.join(directory, index), encoding="utf-8") as fh:
                shards = sorted(set(json.load(fh)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise SkipitError(f"{os.path.join(directory, index)} is not a valid safetensors index "
                              "(no weight_map); re-download the checkpoint") from None
        missing = [s for s in shards if s not in weights]
        if missing:
            raise SkipitError(f"checkpoint {directory} is incomplete: {index} names {len(missing)} missing "
                              f"shard(s), first {missing[0]}; re-download the checkpoint")
    if not weights:
        pickled = [n for n in names if n.endswith(PICKLED_SUFFIXES)]
        if pickled:
            raise SkipitError(f"checkpoint {directory} holds only pickled weights ({', '.join(pickled[:3])}); "
                              "skipit never unpickles: convert them to .safetensors first")
        raise SkipitError(f"checkpoint {directory} holds no .safetensors weight files")
    for name in weights:
        problem = _check_safetensors(os.path.join(directory, name))
        if problem is not None:
            raise SkipitError(f"checkpoint {directory}: {problem}; re-download or re-save it")
    return [os.path.join(directory, name) for name in weights]
