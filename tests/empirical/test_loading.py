"""Which model ``--model`` means, and loading it offline (tiny saved models of every family)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from skipit.empirical.adapters import get_adapter, supported_model_types
from skipit.empirical.data import Example, build_inputs
from skipit.empirical.loading import ALIASES, load_model_and_processor, resolve_model, supported_aliases
from skipit.empirical.settings import flag_of
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
    import skipit.demo as demo

    assert (demo.DEMO_MODEL_DIR / "config.json").is_file(), "the bundled demo model is missing"
    resolved = resolve_model(None)
    assert resolved.source == "demo" and resolved.location == str(demo.DEMO_MODEL_DIR)
    monkeypatch.setattr(demo, "DEMO_MODEL_DIR", tmp_path / "gone")
    with pytest.raises(SkipitError, match=r"demo model is missing from .*gone; retrain it with `python -m skipit.demo.train"):
        resolve_model(None)


@pytest.mark.parametrize("name,match", [
    ("llava-1.5-8b", r"unknown model 'llava-1.5-8b': not an alias \(.*llava-1.5-7b.*\)"),
    ("./nowhere/model", r"`model` ./nowhere/model: no such directory"),
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
    assert "hf download llava-hf/llava-1.5-7b-hf" in text  # huggingface_hub >= 1.0 has only `hf`


def _no_proxy(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def _closed_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_hub_fails_at_once_with_the_installed_download_command(tmp_path, monkeypatch):
    """No connection to the hub endpoint and an empty cache: the error comes without the hub
    client's ~20 s of retries, names `hf download` and says how to skip the retries."""
    import time

    import huggingface_hub.constants as hub_constants

    _no_proxy(monkeypatch)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(SkipitError) as info:
        load_model_and_processor("org/tiny", device="cpu")
    assert time.monotonic() - start < 10
    text = str(info.value)
    assert "'org/tiny' is not available: the hub (http://127.0.0.1:" in text and "could not be reached" in text
    assert "hf download org/tiny" in text
    assert "HF_HUB_OFFLINE=1" in text and str(tmp_path) in text


def test_unreachable_hub_loads_a_cached_model(tmp_path, monkeypatch):
    """The cache alone serves a hub id when the hub cannot be reached (what from_pretrained
    does after its retries, done at once)."""
    import huggingface_hub.constants as hub_constants

    from skipit.empirical.testing import save_tiny_vlm, tiny_model

    repo = tmp_path / "models--org--tiny"
    save_tiny_vlm("llava", repo / "snapshots" / "0123abcd", seed=3)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    _no_proxy(monkeypatch)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    model, _, info = load_model_and_processor("org/tiny", device="cpu")
    assert info["source"] == "hub" and info["model_type"] == "llava"
    ref = tiny_model("llava", seed=3).state_dict()
    assert list(model.state_dict()) == list(ref)
    assert all(torch.equal(model.state_dict()[k], ref[k]) for k in ref)


def test_hub_reachability_probe(monkeypatch):
    import socket

    import huggingface_hub.constants as hub_constants

    from skipit.empirical.loading import _hub_reachable

    _no_proxy(monkeypatch)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        monkeypatch.setattr(hub_constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert _hub_reachable(timeout=2)
    monkeypatch.setattr(hub_constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    assert not _hub_reachable(timeout=2)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")  # a direct probe says nothing then
    assert _hub_reachable(timeout=2)


def test_download_command_is_the_installed_cli(tmp_path, monkeypatch):
    import os
    import sys

    import huggingface_hub

    from skipit.empirical.loading import _hub_cli

    venv_bin = os.path.dirname(sys.executable)
    if int(huggingface_hub.__version__.split(".")[0]) >= 1:
        assert os.path.isfile(os.path.join(venv_bin, "hf")) and _hub_cli() == "hf"
    (tmp_path / "bin").mkdir()
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert _hub_cli() == "hf"  # neither found: the current name
    (tmp_path / "bin" / "huggingface-cli").write_text("")
    assert _hub_cli() == "huggingface-cli"  # huggingface_hub < 0.34
    (tmp_path / "bin" / "hf").write_text("")
    assert _hub_cli() == "hf"


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_tiny_model_reloads_and_its_prompts_fit_the_model(tmp_path, family):
    """from_pretrained on a saved tiny model; the inputs built from its processor (or the
    image + tokenizer stand-in) hold as many vision placeholders as the model has image
    features, so the forward runs and the adapter finds them."""
    from skipit.empirical.testing import save_tiny_vlm

    save_tiny_vlm(family, tmp_path)
    model, processor, info = load_model_and_processor(str(tmp_path), device="cpu", dtype="float32")
    assert info == {"name": str(tmp_path), "source": "local", "location": str(tmp_path), "model_type": family,
                    "revision": None}  # a local directory has no hub commit
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
    with pytest.raises(SkipitError, match="`dtype` must be one of auto, float32, float16, bfloat16, got 'half'") as err:
        load_model_and_processor(str(tmp_path), device="cpu", dtype="half")
    assert err.value.render(flag_of).startswith("--dtype must be one of")  # as the command line prints it


def test_local_model_files_are_real_saves(tmp_path):
    """A local directory is loaded with from_pretrained: its weights, not a fresh init."""
    from skipit.empirical.testing import save_tiny_vlm, tiny_model

    save_tiny_vlm("llava", tmp_path, seed=3)
    model, _, _ = load_model_and_processor(str(tmp_path), device="cpu")
    got, ref = model.state_dict(), tiny_model("llava", seed=3).state_dict()
    assert list(got) == list(ref)
    for (name, p), (ref_name, q) in zip(got.items(), ref.items(), strict=True):
        assert name == ref_name and torch.equal(p, q), name
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "llava"


# ------------------------------------------------- real checkpoints' inputs (issue 11)

def _bos_adding_tokenizer(**special):
    """The tiny word-level tokenizer, but adding ``<s>`` in front with special tokens on, as the
    Llama-3 and Gemma 3 tokenizers do (a ``TemplateProcessing`` post-processor)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    from skipit.empirical.testing import BOS_ID, tiny_tokenizer

    backend = tiny_tokenizer().backend_tokenizer
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS_ID)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                  unk_token="<pad>", extra_special_tokens=special)
    tok.padding_side = "left"
    return tok


# a chat template that writes the BOS itself, as Gemma 3's and Llama 3's do
BOS_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{% for item in message['content'] %}"
                "{% if item['type'] == 'image' %} <image_start>{% else %} {{ item['text'] }}{% endif %}"
                "{% endfor %}{% endfor %}{% if add_generation_prompt %} answer :{% endif %}")


def _gemma3_checkpoint(directory):
    """A tiny Gemma 3 saved with a real ``Gemma3Processor`` (Gemma-style tokenizer and template)."""
    import transformers as tf

    from skipit.empirical.testing import tiny_model

    model = tiny_model("gemma3", num_layers=2)
    model.save_pretrained(directory)
    tok = _bos_adding_tokenizer(boi_token="<image_start>", eoi_token="<image_end>", image_token="<image>")
    processor = tf.Gemma3Processor(image_processor=tf.Gemma3ImageProcessorPil(size={"height": 32, "width": 32}),
                                   tokenizer=tok, image_seq_length=model.config.mm_tokens_per_image,
                                   chat_template=BOS_TEMPLATE)
    processor.save_pretrained(directory)
    return str(directory)


def _assert_one_bos_per_prompt(directory):
    """Load ``directory``, build a padded batch of two prompts, check each starts with one BOS."""
    from skipit.empirical.testing import BOS_ID

    model, processor, _ = load_model_and_processor(directory, device="cpu")
    img = Image.new("RGB", (8, 8), (10, 200, 30))
    inputs = build_inputs(processor, [Example(img, "what digit", "one"), Example(img, "is the digit even", "no")],
                          model=model)
    for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"]):
        real = ids[mask.bool()].tolist()
        assert real[0] == BOS_ID and real.count(BOS_ID) == 1
    return model, processor, inputs


def test_one_bos_when_the_chat_template_writes_it(tmp_path):
    """A template writing ``{{ bos_token }}``, then tokenising with special tokens, gives
    ``<s> <s>`` unless special tokens are left out (a LLaVA checkpoint on a Llama-3-style tokenizer)."""
    import transformers as tf

    from skipit.empirical.testing import tiny_model

    model = tiny_model("llava", num_layers=2)
    model.save_pretrained(tmp_path)
    side = model.config.vision_config.image_size
    tf.LlavaProcessor(image_processor=tf.CLIPImageProcessor(size={"shortest_edge": side},
                                                            crop_size={"height": side, "width": side}),
                      tokenizer=_bos_adding_tokenizer(), patch_size=model.config.vision_config.patch_size,
                      vision_feature_select_strategy=model.config.vision_feature_select_strategy,
                      image_token="<image>", num_additional_image_tokens=1,
                      chat_template=BOS_TEMPLATE.replace("<image_start>", "<image>")).save_pretrained(tmp_path)
    _assert_one_bos_per_prompt(str(tmp_path))


def test_gemma3_processor_gets_one_image_list_per_sample_and_one_bos(tmp_path):
    """Gemma3Processor refuses a flat image list at batch size > 1; the template writes the BOS,
    so tokenising with special tokens must not add a second one."""
    from transformers import Gemma3Processor

    model, processor, inputs = _assert_one_bos_per_prompt(_gemma3_checkpoint(tmp_path))
    assert isinstance(processor, Gemma3Processor)
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


@pytest.mark.parametrize("filename", ["chat_template.json", "chat_template.jinja"])
def test_a_checkpoints_template_file_is_used_where_the_tokenizer_has_none(tmp_path, filename):
    """A Qwen-style directory keeps its chat template in chat_template.json (or .jinja): the prompt
    is that template's, not ``USER: ... ASSISTANT:``; its image markers are the template's."""
    from skipit.empirical.data import build_prompt
    from skipit.empirical.testing import save_tiny_vlm

    save_tiny_vlm("qwen2_5_vl", tmp_path)
    template = ("{% for message in messages %}{% for item in message['content'] %}{% if item['type'] == 'image' %}"
                " <image_start> <image> <image_end>{% else %} {{ item['text'] }}{% endif %}{% endfor %}{% endfor %}"
                "{% if add_generation_prompt %} answer :{% endif %}")
    path = tmp_path / filename
    path.write_text(json.dumps({"chat_template": template}) if filename.endswith(".json") else template)
    model, processor, _ = load_model_and_processor(str(tmp_path), device="cpu")
    example = Example(Image.new("RGB", (32, 32), (90, 90, 90)), "what digit", "one")
    assert build_prompt(processor, example) == " <image_start> <image> <image_end> what digit answer :"
    inputs = build_inputs(processor, [example], model=model)
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_idefics3_stand_in_refuses_split_images(tmp_path):
    """Without the family processor, split tiles cannot be laid out as Idefics3Processor does: refused."""
    from skipit.empirical.testing import save_tiny_vlm

    save_tiny_vlm("idefics3", tmp_path)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    config["do_image_splitting"] = True
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    model, processor, _ = load_model_and_processor(str(tmp_path), device="cpu")
    with pytest.raises(SkipitError, match=r"idefics3: image splitting \(do_image_splitting\) is on, but the family's "
                                          r"processor could not be assembled here"):
        build_inputs(processor, [Example(Image.new("RGB", (64, 32)), "what digit", "one")], model=model)


def test_images_a_family_cannot_take_are_caught_before_the_run(tmp_path):
    """Qwen2.5-VL refuses aspect ratios beyond 200: a 400x1 image is named up front, or skipped."""
    from skipit.empirical.data import check_examples_for
    from skipit.empirical.testing import save_tiny_vlm

    save_tiny_vlm("qwen2_5_vl", tmp_path)
    model, processor, _ = load_model_and_processor(str(tmp_path), device="cpu")
    good = Example(Image.new("RGB", (32, 32)), "what digit", "one", source="d.jsonl:1")
    thin = Example(Image.new("RGB", (400, 1)), "what digit", "one", source="d.jsonl:2")
    with pytest.raises(SkipitError, match=r"1 example\(s\) this model cannot take:\n  d.jsonl:2: image of 400x1 "
                                          r"pixels: its aspect ratio is beyond qwen2_5_vl's limit of 200:1"):
        check_examples_for(model, processor, [good, thin])
    kept, skipped = check_examples_for(model, processor, [good, thin], skip_bad=True)
    assert kept == [good] and [name for name, _ in skipped] == ["d.jsonl:2"]


def test_prompt_longer_than_the_context_is_refused_naming_the_example(tmp_path):
    from skipit.empirical.data import check_examples_for
    from skipit.empirical.testing import save_tiny_vlm

    save_tiny_vlm("llava", tmp_path)
    model, processor, _ = load_model_and_processor(str(tmp_path), device="cpu")
    img = Image.new("RGB", (8, 8))
    short, long = Example(img, "what digit", "one", source="d:1"), Example(img, "what digit " * 40, "one", source="d:2")
    n_short = int(build_inputs(processor, [short], model=model)["input_ids"].shape[1])
    model.config.text_config.max_position_embeddings = n_short + 5
    with pytest.raises(SkipitError, match=rf"prompt longer than the model's context of {n_short + 5} tokens: d:2 "
                                          r"\(\d+ tokens\)"):
        build_inputs(processor, [short, long], model=model)
    kept, skipped = check_examples_for(model, processor, [short, long], skip_bad=True)
    assert kept == [short] and skipped[0][0] == "d:2"


def test_an_image_the_processor_refuses_is_named_up_front(tmp_path):
    """Any family: what the processor itself refuses (here a wrapper refusing 3x3 images) is
    reported with the example's name and the processor's message, before the run."""
    from skipit.empirical.data import check_examples_for
    from skipit.empirical.testing import save_tiny_vlm

    save_tiny_vlm("llava", tmp_path)
    model, processor, _ = load_model_and_processor(str(tmp_path), device="cpu")

    class Refusing:
        def __init__(self, inner):
            self.inner = inner
            self.tokenizer = inner.tokenizer
            self.chat_template = getattr(inner, "chat_template", None)

        def apply_chat_template(self, *args, **kwargs):
            return self.inner.apply_chat_template(*args, **kwargs)

        def __call__(self, images=None, **kwargs):
            if any(im.size == (3, 3) for im in images):
                raise ValueError("images must be at least 4 pixels wide")
            return self.inner(images=images, **kwargs)

    good = Example(Image.new("RGB", (8, 8)), "what digit", "one", source="d:1")
    tiny = Example(Image.new("RGB", (3, 3)), "what digit", "one", source="d:2")
    with pytest.raises(SkipitError, match=r"  d:2: the processor refuses it \(ValueError: images must be at least 4 "
                                          r"pixels wide\)"):
        check_examples_for(model, Refusing(processor), [good, tiny])
    assert check_examples_for(model, Refusing(processor), [good, tiny], skip_bad=True)[0] == [good]
