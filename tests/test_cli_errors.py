"""Errors a new user meets (issue 11): one line, exit 2, no traceback, before any model work,
and no empty or half-written ``--out`` left behind."""

from __future__ import annotations

import os
import shutil

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from skipit.cli import main  # noqa: E402
from skipit.empirical.settings import EvaluateSettings, SettingError, SkipSettings, flag_of  # noqa: E402
from tests.empirical.certify_helpers import write_digit_jsonl  # noqa: E402


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    from skipit.empirical.testing import save_tiny_vlm

    return str(save_tiny_vlm("llava", tmp_path_factory.mktemp("tiny-llava"), seed=3))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_digit_jsonl(tmp_path_factory.mktemp("data"), 4)


def _one_line_error(capsys, rc, pattern):
    import re

    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("skipit")]
    assert lines and re.search(pattern, lines[-1]), err
    return err


def _certify(llava_dir, data, out, *extra):
    return main(["certify", "--model", llava_dir, "--data", data, "--out", str(out), "--samples", "4",
                 "--batch-size", "2", "--no-progress", *extra])


def test_out_that_is_a_file_is_refused(capsys, tmp_path, llava_dir, data):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    _one_line_error(capsys, _certify(llava_dir, data, target), r"--out .*a-file.* is an existing file")
    assert target.read_text() == "keep me"


def test_out_under_a_file_is_refused(capsys, tmp_path, llava_dir, data):
    (tmp_path / "a-file").write_text("x")
    _one_line_error(capsys, _certify(llava_dir, data, tmp_path / "a-file" / "out"), r"--out .*under .*a-file")


def test_out_that_is_not_writable_is_refused(capsys, llava_dir, data):
    """/proc is read-only for every user, root included, so this runs wherever the tests run."""
    _one_line_error(capsys, _certify(llava_dir, data, "/proc/skipit-cli-out"), r"--out /proc/skipit-cli-out is not writable")
    assert not os.path.exists("/proc/skipit-cli-out")


@pytest.mark.parametrize("device,pattern", [
    ("tpu", r"--device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    ("cuda:x", r"--device must be auto, cpu, cuda, cuda:N or mps, got 'cuda:x'"),
])
def test_unknown_device_is_refused_before_any_model_work(capsys, tmp_path, llava_dir, data, device, pattern):
    out = tmp_path / "out"
    _one_line_error(capsys, _certify(llava_dir, data, out, "--device", device), pattern)
    assert not out.exists()


def test_cuda_on_a_machine_without_cuda_is_refused(capsys, tmp_path, llava_dir, data):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out"
    _one_line_error(capsys, _certify(llava_dir, data, out, "--device", "cuda"), r"--device cuda.*CUDA")
    assert not out.exists()


def test_truncated_safetensors_is_refused_and_leaves_no_out(capsys, tmp_path, llava_dir, data):
    broken = tmp_path / "broken"
    shutil.copytree(llava_dir, broken)
    weights = broken / "model.safetensors"
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 2])
    out = tmp_path / "out"
    _one_line_error(capsys, _certify(str(broken), data, out), r"model\.safetensors.*(truncated|beyond|cut off)")
    assert not out.exists()


def test_pickled_only_checkpoint_is_refused(capsys, tmp_path, llava_dir, data):
    pickled = tmp_path / "pickled"
    shutil.copytree(llava_dir, pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"not unpickled")
    out = tmp_path / "out"
    _one_line_error(capsys, _certify(str(pickled), data, out), r"only pickled weights .*never unpickles")
    assert not out.exists()


def test_second_run_on_a_locked_out_is_refused_naming_the_first(capsys, tmp_path, llava_dir, data):
    from skipit.empirical.files import output_lock

    out = tmp_path / "out"
    out.mkdir()
    with output_lock(str(out), command="skipit certify (the first run)"):
        _one_line_error(capsys, _certify(llava_dir, data, out), rf"pid {os.getpid()}")
    assert not (out / "certificate.json").exists()




BRACES = "{model}{}"
"""User text that the ``{parameter}`` syntax of SettingError would misread if it were not kept verbatim."""


def _braced_cases(tmp_path):
    """``{case: (command line, library call, parameter, message)}``: ``message(name)`` is the error with
    each parameter ``p`` written ``name(p)`` (the library's `` `p` ``, the command line's flag) and the
    user's text, braces included, as given."""
    from skipit.empirical.loading import parse_device_map, parse_max_memory, resolve_device, resolve_model
    from skipit.empirical.modes import EVALUATE_MODES
    from skipit.empirical.predict import mode_context
    from skipit.empirical.settings import parse_layer_grid

    model = f"./no/{BRACES}/x"
    unread = tmp_path / "{device_map}{" / "map.json"
    badly_placed = tmp_path / f"{BRACES}.json"
    badly_placed.write_text('{"{layers}{": "{device}"}')
    out = str(tmp_path / "out")
    grid = "'all', '1,2,8', '2-12' or '2-12:2'"
    return {
        "model": (["certify", "--model", model, "--data", "digits-val", "--out", out], lambda: resolve_model(model),
                  "model", lambda n: f"{n('model')} {model}: no such directory (a local model is a directory "
                                     "written by save_pretrained)"),
        "device-map-path": (["certify", "--device-map", str(unread), "--out", out], lambda: parse_device_map(unread),
                            "device_map", lambda n: f"{n('device_map')} {unread}: cannot read it (No such file or "
                                                    "directory)"),
        "device-map-content": (["certify", "--device-map", str(badly_placed), "--out", out],
                               lambda: parse_device_map(badly_placed), "device_map",
                               lambda n: f"{n('device_map')} {badly_placed}: module '{{layers}}{{' has device "
                                         "'{device}'; a device is a GPU index >= 0, \"cuda:N\", \"cpu\", \"mps\" or "
                                         "\"disk\""),
        "device": (["certify", "--device", "{device}{", "--out", out], lambda: resolve_device("{device}{"), "device",
                   lambda n: f"{n('device')} must be auto, cpu, cuda, cuda:N or mps, got '{{device}}{{'"),
        "max-memory": (["certify", "--device-map", "auto", "--max-memory", "{max_memory}=1GB", "--out", out],
                       lambda: parse_max_memory("{max_memory}=1GB"), "max_memory",
                       lambda n: f"{n('max_memory')}: a device is a GPU index, cpu or mps, got '{{max_memory}}' in "
                                 "'{max_memory}=1GB'"),
        "layers-parsed": (None, lambda: parse_layer_grid("1,{layers}{", 4), "layers",
                          lambda n: f"{n('layers')} must look like {grid}, got '1,{{layers}}{{'"),
        "layers-setting": (["evaluate", "--layers", "1,{layers}{", "--out", out],
                           lambda: EvaluateSettings(layers="1,{layers}{"), "layers",
                           lambda n: f"{n('layers')} must look like {grid} (or be a sequence of layers >= 1), got "
                                     "'1,{layers}{'"),
        "mode": (None, lambda: mode_context(None, "{mode}{", 1), "mode",
                 lambda n: f"{n('mode')} must be one of {', '.join(EVALUATE_MODES)}, got '{{mode}}{{'"),
        "layers-with-layer": (["skip", "--mode", "late-entry", "--layer", "3", "--layers", BRACES],
                              lambda: SkipSettings(mode="late-entry", layer=3, layers=BRACES).target(None), "mode",
                              lambda n: f"{n('mode')} late-entry takes {n('layer')}, not {n('layers')}; got "
                                        f"{n('layer')} 3 {n('layers')} {BRACES}"),
    }


@pytest.mark.parametrize("case", ["model", "device-map-path", "device-map-content", "device", "max-memory",
                                  "layers-parsed", "layers-setting", "layers-with-layer", "mode"])
def test_user_text_holding_braces_is_shown_verbatim_naming_the_flag(capsys, tmp_path, case):
    """A model path, a --device-map file (its path and its contents), --device, --max-memory and a
    --layers list holding ``{model}``, ``{}`` or an unclosed ``{`` are quoted as given; the library
    names the parameter, the command line its flag."""
    argv, call, parameter, message = _braced_cases(tmp_path)[case]
    with pytest.raises(SettingError) as info:
        call()
    assert info.value.parameter == parameter
    assert str(info.value) == message(lambda p: f"`{p}`")
    if argv is not None:
        assert main(argv) == 2
        assert capsys.readouterr().err == f"skipit {argv[0]}: error: {message(flag_of)}\n"
