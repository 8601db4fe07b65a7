"""Which model ``--model`` means, and loading it offline (tiny saved models of every family)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from skipit.empirical.adapters import get_adapter, supported_model_types
from skipit.empirical.data import Example, build_inputs
from skipit.empirical.loading import ALIASES, load_model_and_processor, resolve_model, supported_aliases
from skipit.errors import SkipitError

FAMILIES = ["llava", "llava_next", "qwen2_5_vl", "gemma3", "idefics3", "smolvlm", "deepseek_vl"]


@pytest.mark.parametrize("alias,hub_id", [
    ("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf"),
    ("llava-1.5-13b", "llava-hf/llava-1.5-13b-hf"),
    ("llava-next-7b", "llava-hf/llava-v1.6-vicuna-7b-hf"),
    ("qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct"),
])
def test_paper_aliases_map_to_their_hub_ids(alias, hub_id):
    assert resolve_model(alias).location == hub_id
    assert resolve_model(alias).source == "alias"


def test_every_alias_family_has_an_adapter():
    types = set(supported_model_types())
    assert {family for _, family in ALIASES.values()} <= types
    assert supported_aliases() == ALIASES


def test_hub_id_and_local_dir_and_demo(tmp_path):
    assert resolve_model("org/some-model").source == "hub"
    (tmp_path / "config.json").write_text("{}")
    local = resolve_model(str(tmp_path))
    assert local.source == "local" and local.location == str(tmp_path)


def test_demo_model_resolves_to_the_package_data(monkeypatch, tmp_path):
    import skipit.demo

    demo = pytest.importorskip("skipit.demo")
    if (demo.DEMO_MODEL_DIR / "config.json").is_file():
        resolved = resolve_model(None)
        assert resolved.source == "demo" and resolved.location == str(demo.DEMO_MODEL_DIR)
    monkeypatch.setattr(skipit.demo, "DEMO_MODEL_DIR", tmp_path / "gone")
    with pytest.raises(SkipitError, match=r"demo model is missing from .*gone; retrain it with `python -m skipit.demo.train"):
        resolve_model(None)


@pytest.mark.parametrize("name,match", [
    ("llava-1.5-8b", r"unknown model 'llava-1.5-8b': not an alias \(.*llava-1.5-7b.*\)"),
    ("./nowhere/model", r"--model ./nowhere/model: no such directory"),
    ("a/b/c", r"no such directory"),
])
def test_unknown_model_names(name, match):
    with pytest.raises(SkipitError, match=match):
        resolve_model(name)


def test_directory_without_config(tmp_path):
    with pytest.raises(SkipitError, match="has no config.json"):
        resolve_model(str(tmp_path))


def test_unsupported_model_type_lists_supported_ones(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(SkipitError, match=r"model type 'bert' .* not supported; supported model types: .*llava"):
        load_model_and_processor(str(tmp_path), device="cpu")


def test_missing_weights_offline_says_which_id_where_and_how(tmp_path, monkeypatch):
    """Offline with an empty cache: the error names the id, the cache directory and the download command."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(SkipitError) as info:
        load_model_and_processor("llava-1.5-7b", device="cpu")
    text = str(info.value)
    assert "'llava-hf/llava-1.5-7b-hf' is not available" in text
    assert str(tmp_path) in text
    assert "huggingface-cli download llava-hf/llava-1.5-7b-hf" in text


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_tiny_model_reloads_and_its_prompts_fit_the_model(tmp_path, family):
    """from_pretrained on a saved tiny model; the inputs built from its processor (or the
    image + tokenizer stand-in) hold as many vision placeholders as the model has image
    features, so the forward runs and the adapter finds them."""
    from skipit.empirical.testing import save_tiny_vlm

    save_tiny_vlm(family, tmp_path)
    model, processor, info = load_model_and_processor(str(tmp_path), device="cpu", dtype="float32")
    assert info == {"name": str(tmp_path), "source": "local", "location": str(tmp_path), "model_type": family}
    assert not model.training and model.dtype == torch.float32
    img = Image.new("RGB", (8, 8), (10, 200, 30))
    inputs = build_inputs(processor, [Example(img, "what digit", "one"), Example(img, "is the digit even", "no")],
                          model=model)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape
    vision = get_adapter(model).vision_mask(inputs["input_ids"], model.config)
    assert int(vision[0].sum()) == int(vision[1].sum()) > 0


def test_dtype_is_applied(tmp_path):
    from skipit.empirical.testing import save_tiny_vlm

    save_tiny_vlm("llava", tmp_path)
    model, _, _ = load_model_and_processor(str(tmp_path), device="cpu", dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    with pytest.raises(SkipitError, match="--dtype must be one of auto, float32, float16, bfloat16, got 'half'"):
        load_model_and_processor(str(tmp_path), device="cpu", dtype="half")


def test_local_model_files_are_real_saves(tmp_path):
    """A local directory is loaded with from_pretrained: its weights, not a fresh init."""
    from skipit.empirical.testing import save_tiny_vlm, tiny_model

    save_tiny_vlm("llava", tmp_path, seed=3)
    model, _, _ = load_model_and_processor(str(tmp_path), device="cpu")
    ref = tiny_model("llava", seed=3)
    for (name, p), (_, q) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(p, q), name
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "llava"
