"""Models placed by accelerate (``device_map``, CPU and disk offload) give the plain model's numbers.

Offloaded decoder layers keep their weights on the ``meta`` device and accelerate's hooks
load them for each forward; the capture engine, the attention probe and every skipping
mode run their own hooks beside those. On this CPU-only machine the device map sends
layers to ``"cpu"`` (CPU offload) and ``"disk"`` (an offload folder), so every hook path of
accelerate runs; layers on several GPUs are the same hooks with other devices.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

from skipit.empirical import capture_statistics  # noqa: E402
from skipit.empirical import skipping  # noqa: E402
from skipit.empirical.loading import (  # noqa: E402
    input_device, load_model_and_processor, parameter_tensors, parse_device_map, parse_max_memory,
    resolve_device,
)
from skipit.empirical.testing import save_tiny_vlm, tiny_batch  # noqa: E402
from skipit.errors import SkipitError  # noqa: E402

TOLERANCE = 1e-5  # relative, on statistics and logits
LAYERS = 4


def _offload_map(prefix="model.language_model"):
    """Decoder layers 2 and 4 on disk, 1 and 3 offloaded to the CPU store, the rest plain CPU."""
    mapping = {"model.vision_tower": "cpu", "model.multi_modal_projector": "cpu", "lm_head": "cpu",
               f"{prefix}.embed_tokens": "cpu", f"{prefix}.norm": "cpu", f"{prefix}.rotary_emb": "cpu"}
    for i in range(LAYERS):
        mapping[f"{prefix}.layers.{i}"] = "disk" if i % 2 else "cpu"
    return mapping


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("device-map")
    directory = save_tiny_vlm("llava", root / "model", seed=3, num_layers=LAYERS)
    plain, processor, _ = load_model_and_processor(directory, device="cpu")
    mapped, _, _ = load_model_and_processor(directory, device="cpu", device_map=_offload_map(),
                                            offload_folder=str(root / "offload"))
    return plain, mapped, directory, root


@pytest.fixture(scope="module")
def batch(models):
    return tiny_batch(models[0], batch_size=3, padding_side="left", seed=5)


def _close(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.allclose(a, b, rtol=TOLERANCE, atol=TOLERANCE * max(1.0, float(np.abs(a).max(initial=0.0))))


def _statistics(model, batch):
    with torch.inference_mode(), capture_statistics(model) as cap:
        model(**batch)
    return cap.statistics


def test_offload_map_really_offloads(models):
    """The fixture is what it claims: layers 2 and 4 on disk, weights of offloaded layers on meta."""
    _, mapped, _, _ = models
    assert mapped.hf_device_map["model.language_model.layers.1"] == "disk"
    devices = {p.device.type for n, p in mapped.named_parameters() if "language_model.layers.1." in n}
    assert devices == {"meta"}


def test_offloaded_model_statistics_equal_plain(models, batch):
    """Distances, proximal counts, CKA and the attention ratio under CPU + disk offload equal the
    plain model's to 1e-5 (relative)."""
    plain, mapped, _, _ = models
    a, b = _statistics(plain, batch).to_dict(), _statistics(mapped, batch).to_dict()
    assert a["num_examples"] == b["num_examples"] == 3
    for group in a["groups"]:
        for key in a["groups"][group]:
            assert _close(a["groups"][group][key], b["groups"][group][key]), (group, key)
    for group in a["cka"]:
        assert _close(a["cka"][group]["hsic"], b["cka"][group]["hsic"]), group
    assert a["attention"] is not None
    assert _close(a["attention"]["head_sum"], b["attention"]["head_sum"])


SKIP_MODES = {
    "full": lambda model: skipping.contextlib.nullcontext(),
    "late-entry-3": lambda model: skipping.late_entry(model, layer=3),
    "late-entry-oracle-3": lambda model: skipping.late_entry(model, layer=3, variant="oracle"),
    "early-exit-2": lambda model: skipping.early_exit(model, layer=2),
    "freeze-2-3": lambda model: skipping.freeze(model, [2, 3]),
}


@pytest.mark.parametrize("mode", sorted(SKIP_MODES))
def test_offloaded_model_skipped_logits_equal_plain(models, batch, mode):
    """Each skipping mode gives the same logits on the offloaded model as on the plain one (1e-5),
    and differs from the full model where it skips something (so the comparison can fail)."""
    plain, mapped, _, _ = models
    with torch.inference_mode():
        with SKIP_MODES[mode](plain):
            expected = plain(**batch).logits
        with SKIP_MODES[mode](mapped):
            got = mapped(**batch).logits
        full = plain(**batch).logits
    assert _close(expected, got)
    if mode != "full":
        assert not torch.allclose(expected, full, atol=1e-4)


def test_offloaded_generate_with_early_exit_equals_plain(models, batch):
    """A cached decode under early exit (hooks on the cache path) gives the plain model's tokens."""
    plain, mapped, _, _ = models
    kwargs = dict(max_new_tokens=3, min_new_tokens=3, do_sample=False)
    with torch.inference_mode():
        with skipping.early_exit(plain, layer=2):
            expected = plain.generate(**batch, **kwargs)
        with skipping.early_exit(mapped, layer=2):
            got = mapped.generate(**batch, **kwargs)
    assert torch.equal(expected, got)


def test_device_map_strategy_with_a_cpu_cap_offloads_to_disk(models, batch):
    """``--device-map sequential --max-memory cpu=...`` below the model's size sends layers to the
    offload folder, and the logits still equal the plain model's."""
    plain, _, directory, root = models
    size = sum(p.numel() * p.element_size() for p in plain.parameters())
    capped, _, _ = load_model_and_processor(
        directory, device="cpu", device_map="sequential", max_memory={"cpu": size // 2},
        offload_folder=str(root / "offload-capped"))
    assert "disk" in set(capped.hf_device_map.values())
    with torch.inference_mode():
        assert _close(plain(**batch).logits, capped(**batch).logits)


def test_device_map_file_loads_like_the_mapping(models, batch, tmp_path):
    """A ``--device-map FILE.json`` is read into the mapping and placed as given."""
    plain, _, directory, root = models
    path = tmp_path / "map.json"
    path.write_text(json.dumps(_offload_map()))
    mapping = parse_device_map(str(path))
    assert mapping == _offload_map()
    loaded, _, _ = load_model_and_processor(directory, device="cpu", device_map=mapping,
                                            offload_folder=str(root / "offload-file"))
    assert loaded.hf_device_map == _offload_map()
    with torch.inference_mode():
        assert _close(plain(**batch).logits, loaded(**batch).logits)


def test_input_device_of_an_offloaded_model_is_the_main_device(models):
    """Offloaded layers run on accelerate's main device: cpu when the map names no GPU."""
    plain, mapped, _, _ = models
    assert input_device(mapped) == torch.device("cpu")
    assert input_device(plain) == torch.device("cpu")


def test_parameter_tensors_read_offloaded_values(models):
    """Offloaded parameters are read from the offload store: the plain model's values, no meta."""
    plain, mapped, _, _ = models
    reference = dict(plain.named_parameters())
    seen = dict(parameter_tensors(mapped))
    assert set(seen) == set(reference)
    offloaded = [name for name, p in mapped.named_parameters() if p.device.type == "meta"]
    assert offloaded
    for name in offloaded:
        assert seen[name].device.type != "meta"
        assert torch.equal(torch.as_tensor(seen[name]).to(reference[name].dtype), reference[name].detach())


# ---------------------------------------------------------------- argument checks

@pytest.mark.parametrize("value, match", [
    ("everywhere", "`device_map` must be one of auto, balanced"),
    ("missing.json", "cannot read it"),
])
def test_device_map_argument_errors(value, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SkipitError, match=match):
        parse_device_map(value)


@pytest.mark.parametrize("content, match", [
    ("[1, 2]", "non-empty JSON object"),
    ("{not json", "not JSON"),
    ('{"model.language_model.layers.0": "gpu7"}', "has device 'gpu7'"),
    ('{"lm_head": -1}', "has device -1"),
])
def test_device_map_file_errors(content, match, tmp_path):
    path = tmp_path / "map.json"
    path.write_text(content)
    with pytest.raises(SkipitError, match=match):
        parse_device_map(str(path))


def test_device_map_strategies_pass_through():
    assert [parse_device_map(v) for v in ("auto", "balanced", "sequential", None)] == \
        ["auto", "balanced", "sequential", None]


def test_max_memory_parses_to_accelerate_form():
    assert parse_max_memory("0=20GiB, 1=18.5GB,cpu=60GiB") == {0: "20GiB", 1: "18.5GB", "cpu": "60GiB"}
    assert parse_max_memory("mps=512MiB") == {"mps": "512MiB"}
    assert parse_max_memory("cpu=1000") == {"cpu": 1000}
    assert parse_max_memory(None) is None


@pytest.mark.parametrize("value, match", [
    ("20GiB", "DEVICE=SIZE"),
    ("gpu0=20GiB", "a device is a GPU index, cpu or mps, got 'gpu0'"),
    ("0=lots", "a size is a number"),
    ("0=20TiB", "a size is a number"),
    ("0=20 GiB", "a size is a number"),
    ("0=1GiB,0=2GiB", "names device 0 twice"),
])
def test_max_memory_errors(value, match):
    with pytest.raises(SkipitError, match=match):
        parse_max_memory(value)


def test_max_memory_without_device_map_is_refused(models):
    _, _, directory, _ = models
    with pytest.raises(SkipitError, match="`max_memory` needs `device_map`"):
        load_model_and_processor(directory, device="cpu", max_memory={"cpu": "1GiB"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_a_one_line_error(device):
    with pytest.raises(SkipitError, match=r"this machine has no CUDA device") as info:
        resolve_device(device)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("device", ["gpu", "CPU", "cuda:x", "meta", "tpu:0"])
def test_unknown_device_is_a_one_line_error(device):
    with pytest.raises(SkipitError, match=r"`device` must be auto, cpu, cuda, cuda:N or mps, got"):
        resolve_device(device)


def test_known_devices_resolve():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")


def test_offloaded_model_has_the_plain_weights_fingerprint(models):
    """The fingerprint reads offloaded weights from accelerate's store: equal to the plain model's,
    so a certificate made on one placement is recognised on the other."""
    from skipit.empirical.weights import weights_fingerprint

    plain, mapped, _, _ = models
    assert weights_fingerprint(mapped) == weights_fingerprint(plain)


def test_certify_on_an_offloaded_model_gives_the_plain_certificate(models):
    """certify's statistics and verification under CPU + disk offload equal the plain model's (1e-5)."""
    from skipit.empirical.certificate import CertifySettings
    from skipit.empirical.certify_run import certify
    from tests.empirical.certify_helpers import digit_examples
    from tests.empirical.test_certify import _assert_same_certificate

    plain, mapped, directory, _ = models
    _, processor, info = load_model_and_processor(directory, device="cpu")
    examples = digit_examples(6)
    settings = CertifySettings(batch_size=3, calibration_fraction=0.5)
    want = certify(plain, processor, examples, settings, progress=False, model_info=info)
    got = certify(mapped, processor, examples, settings, progress=False, model_info=info)
    _assert_same_certificate(got, want, rel=TOLERANCE)


# ---------------------------------------------------------------- the command line

def _cli_certify(directory, data, out, *extra):
    from skipit.cli import main

    return main(["certify", "--model", directory, "--data", data, "--out", str(out), "--samples", "4",
                 "--batch-size", "2", "--threads", "1", "--no-progress", "--no-verify", *extra])


def test_certify_command_with_a_device_map_file_equals_the_plain_run(models, tmp_path):
    """``skipit certify --device-map map.json`` (layers on disk): the plain run's layers, the map
    recorded in the certificate, and the disk-offload folder removed after the run."""
    from tests.empirical.certify_helpers import write_digit_jsonl
    from tests.empirical.test_certify import _assert_same_certificate

    _, _, directory, _ = models
    data = write_digit_jsonl(str(tmp_path / "data"), 4)
    path = tmp_path / "map.json"
    path.write_text(json.dumps(_offload_map()))
    assert _cli_certify(directory, data, tmp_path / "plain") == 0
    assert _cli_certify(directory, data, tmp_path / "mapped", "--device-map", str(path)) == 0
    plain = json.loads((tmp_path / "plain" / "certificate.json").read_text())
    mapped = json.loads((tmp_path / "mapped" / "certificate.json").read_text())
    assert mapped["run"]["device_map"] == str(path)
    _assert_same_certificate(mapped["layers"], plain["layers"], path="layers", rel=TOLERANCE)
    assert not list((tmp_path / "mapped").glob("offload-*"))


@pytest.mark.parametrize("extra, message", [
    (["--max-memory", "cpu=1GiB"], "--max-memory needs --device-map"),
    (["--device-map", "auto", "--device", "cpu"], "--device cpu and --device-map both place the model"),
    (["--device-map", "everywhere"], "--device-map must be one of auto, balanced"),
    (["--device", "tpu"], "--device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
])
def test_placement_errors_are_one_line_before_any_work(models, tmp_path, capsys, extra, message):
    """Refused with exit status 2 and one line, before the data are read (the data path does not exist)."""
    _, _, directory, _ = models
    assert _cli_certify(directory, str(tmp_path / "no-such.jsonl"), tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists()


def test_skip_command_with_layers_on_disk_gives_the_plain_accuracy(models, tmp_path, capsys, monkeypatch):
    """``skipit skip --device-map map.json`` (decoder layers on disk): the plain run's accuracies, and
    accelerate is given an offload folder (as by certify and evaluate) inside a temporary directory
    removed after the run. (transformers reads disk layers of a safetensors checkpoint in place and
    writes the folder only for weights it must re-save, so the folder is checked as given.)"""
    import tempfile

    import skipit.empirical.loading as loading
    from skipit.cli import main
    from tests.empirical.certify_helpers import write_digit_jsonl

    _, _, directory, _ = models
    data = write_digit_jsonl(str(tmp_path / "data"), 4)
    path = tmp_path / "map.json"
    path.write_text(json.dumps(_offload_map()))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    folders = []
    load = loading.load_model_and_processor

    def recording_load(*args, offload_folder=None, **kwargs):
        folders.append(offload_folder)
        return load(*args, offload_folder=offload_folder, **kwargs)

    monkeypatch.setattr(loading, "load_model_and_processor", recording_load)
    argv = ["skip", "--mode", "early-exit", "--layer", "2", "--model", directory, "--data", data,
            "--samples", "4", "--batch-size", "2", "--threads", "1", "--repeats", "1", "--json", "--quiet"]
    runs = []
    for extra in ([], ["--device-map", str(path)]):
        assert main([*argv, *extra]) == 0
        runs.append(json.loads(capsys.readouterr().out))
    plain, mapped = runs
    assert mapped["full"]["accuracy"] == plain["full"]["accuracy"]
    assert mapped["skipped"]["accuracy"] == plain["skipped"]["accuracy"]
    assert folders[1] is not None and folders[1].startswith(str(scratch))
    assert not list(scratch.iterdir())
