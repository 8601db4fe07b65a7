"""Weights: the fingerprint sees every byte; broken or pickled weight files are refused before model work."""

import json
import os
import struct

import pytest
import torch
from safetensors.torch import save_file

from skipit.empirical.testing import tiny_model
from skipit.empirical.weights import check_weight_files, weights_fingerprint
from skipit.errors import SkipitError


def _middle(tensor):
    """Flat index of a value far from both ends (a sample of the first/last values misses it)."""
    index = tensor.numel() // 2
    assert 16 <= index < tensor.numel() - 16
    return index


def test_fingerprint_of_a_model_changes_when_one_value_in_the_middle_of_a_tensor_changes():
    model = tiny_model("llava", seed=0)
    before = weights_fingerprint(model)
    assert weights_fingerprint(tiny_model("llava", seed=0)) == before
    name, param = max(model.named_parameters(), key=lambda item: item[1].numel())
    with torch.no_grad():
        param.view(-1)[_middle(param)] += 1e-3
    assert weights_fingerprint(model) != before


def test_fingerprint_of_a_model_sees_a_dtype_change_and_a_renamed_tensor():
    a = torch.nn.Linear(4, 4)
    before = weights_fingerprint(a)
    assert weights_fingerprint(a.to(torch.float64)) != before
    b = torch.nn.Sequential(torch.nn.Linear(4, 4))
    b[0].load_state_dict(a.to(torch.float32).state_dict())
    assert weights_fingerprint(b) != before  # same bytes, names "0.weight" vs "weight"


def test_fingerprint_of_a_checkpoint_changes_when_one_value_in_the_middle_of_a_file_changes(tmp_path):
    tensors = {"a": torch.arange(4096, dtype=torch.float32).reshape(64, 64), "b": torch.ones(10)}
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text("{}")
    before = weights_fingerprint(tmp_path)
    assert weights_fingerprint(str(tmp_path)) == before
    tensors["a"].view(-1)[_middle(tensors["a"])] = -1.0
    save_file(tensors, tmp_path / "model.safetensors")
    assert weights_fingerprint(tmp_path) != before


def test_fingerprint_cache_is_keyed_by_size_and_mtime(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"a": torch.zeros(256)}, path)
    before = weights_fingerprint(tmp_path)
    stat = os.stat(path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 1  # same size
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert weights_fingerprint(tmp_path) != before


def _flip(path, offset):
    """Flip one bit at byte ``offset`` (negative: from the end), same size, a later mtime."""
    stat = os.stat(path)
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


@pytest.mark.parametrize("where", ["at the 4 MiB chunk boundary", "in the last byte"])
def test_fingerprint_of_a_checkpoint_larger_than_one_read_chunk_sees_every_byte(tmp_path, where):
    """A 5 MiB file is read in more than one chunk (``_CHUNK`` = 4 MiB): a change past the
    first chunk (its first byte, or the file's last) changes the fingerprint."""
    import skipit.empirical.weights as weights

    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(5 * (1 << 20) // 4)}, path)
    assert os.path.getsize(path) > weights._CHUNK + 1
    before = weights_fingerprint(tmp_path)
    _flip(path, weights._CHUNK if where.startswith("at") else -1)
    assert weights_fingerprint(tmp_path) != before


def test_renaming_a_weight_file_changes_the_fingerprint(tmp_path):
    """The docstring's "by name and content": the same bytes under another file name, or two
    files' names swapped, are another checkpoint. The two files have one size and one mtime
    (written in the same clock tick), so a cache keyed by path, size and mtime alone would
    return each path's old hash after the swap."""
    save_file({"a": torch.zeros(8)}, tmp_path / "model-1.safetensors")
    save_file({"a": torch.ones(8)}, tmp_path / "model-2.safetensors")
    for name in ("model-1.safetensors", "model-2.safetensors"):
        os.utime(tmp_path / name, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    before = weights_fingerprint(tmp_path)
    os.rename(tmp_path / "model-2.safetensors", tmp_path / "model-3.safetensors")
    renamed = weights_fingerprint(tmp_path)
    assert renamed != before
    os.rename(tmp_path / "model-1.safetensors", tmp_path / "swap.safetensors")
    os.rename(tmp_path / "model-3.safetensors", tmp_path / "model-1.safetensors")
    os.rename(tmp_path / "swap.safetensors", tmp_path / "model-3.safetensors")
    assert weights_fingerprint(tmp_path) not in (before, renamed)


def test_fingerprint_of_a_directory_without_safetensors_is_refused(tmp_path):
    with pytest.raises(SkipitError, match="holds no .safetensors files"):
        weights_fingerprint(tmp_path)


def _checkpoint(tmp_path):
    save_file({"w": torch.zeros(64, 64), "b": torch.zeros(64)}, tmp_path / "model.safetensors")
    return tmp_path / "model.safetensors"


def test_check_accepts_a_whole_checkpoint(tmp_path):
    path = _checkpoint(tmp_path)
    assert check_weight_files(tmp_path) == [str(path)]


@pytest.mark.parametrize("keep, match", [
    (lambda size, header: size - 1, r"tensor '\w' ends at data byte \d+, but the file holds \d+ data bytes"),
    (lambda size, header: 8 + header // 2, r"its header says \d+ header bytes, but the file has \d+"),
    (lambda size, header: 5, r"5 bytes, fewer than the 8 of a safetensors header length"),
])
def test_truncated_safetensors_is_refused_in_one_line(tmp_path, keep, match):
    path = _checkpoint(tmp_path)
    data = path.read_bytes()
    (header,) = struct.unpack("<Q", data[:8])
    path.write_bytes(data[: keep(len(data), header)])
    with pytest.raises(SkipitError, match=r"model\.safetensors is truncated: " + match) as info:
        check_weight_files(tmp_path)
    assert "\n" not in str(info.value)


def test_pickled_bin_only_checkpoint_is_refused_without_unpickling(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")  # never opened
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SkipitError, match=r"holds only pickled weights \(pytorch_model\.bin\); skipit never "
                                          r"unpickles"):
        check_weight_files(tmp_path)


def test_pickled_files_beside_safetensors_are_ignored(tmp_path):
    _checkpoint(tmp_path)
    (tmp_path / "training_args.bin").write_bytes(b"junk")
    assert len(check_weight_files(tmp_path)) == 1


def test_missing_shard_of_an_index_is_refused(tmp_path):
    save_file({"w": torch.zeros(4)}, tmp_path / "model-00001-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"w": "model-00001-of-00002.safetensors",
                                            "v": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(SkipitError, match=r"1 missing shard\(s\), first model-00002-of-00002\.safetensors"):
        check_weight_files(tmp_path)


def test_header_that_disagrees_with_the_shape_is_refused(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 32]}}).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(32))
    with pytest.raises(SkipitError, match=r"is corrupt: tensor 'w' of shape \[4, 4\] and dtype F32 spans"):
        check_weight_files(tmp_path)
