"""Which model ``skipit certify --model NAME`` means, and loading it (weights + processor).

``NAME`` is one of: an alias (``llava-1.5-7b`` ...), a Hugging Face hub id
(``org/name``), a local directory written by ``save_pretrained`` (model and processor),
or ``None`` for the bundled demo model. Offline and not cached, loading raises a
:class:`skipit.errors.SkipitError` that names the id, the cache directory searched and
how to get the files.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from skipit.empirical.processors import load_processor as _load_processor
from skipit.empirical.settings import SettingError
from skipit.empirical.weights import check_weight_files, parameter_tensors  # noqa: F401 - re-exported

if TYPE_CHECKING:
    import torch

# alias -> (hub id, model_type of its config)
ALIASES = {
    "llava-1.5-7b": ("llava-hf/llava-1.5-7b-hf", "llava"),
    "llava-1.5-13b": ("llava-hf/llava-1.5-13b-hf", "llava"),
    "llava-next-7b": ("llava-hf/llava-v1.6-vicuna-7b-hf", "llava_next"),
    "llava-next-13b": ("llava-hf/llava-v1.6-vicuna-13b-hf", "llava_next"),
    "llava-next-mistral-7b": ("llava-hf/llava-v1.6-mistral-7b-hf", "llava_next"),
    "qwen2.5-vl-3b": ("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl"),
    "qwen2.5-vl-7b": ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl"),
    "qwen2.5-vl-32b": ("Qwen/Qwen2.5-VL-32B-Instruct", "qwen2_5_vl"),
    "qwen2.5-vl-72b": ("Qwen/Qwen2.5-VL-72B-Instruct", "qwen2_5_vl"),
    "gemma-3-4b": ("google/gemma-3-4b-it", "gemma3"),
    "gemma-3-12b": ("google/gemma-3-12b-it", "gemma3"),
    "gemma-3-27b": ("google/gemma-3-27b-it", "gemma3"),
    "idefics3-8b": ("HuggingFaceM4/Idefics3-8B-Llama3", "idefics3"),
    "smolvlm-2b": ("HuggingFaceTB/SmolVLM-Instruct", "idefics3"),
    "smolvlm2-256m": ("HuggingFaceTB/SmolVLM2-256M-Video-Instruct", "smolvlm"),
    "smolvlm2-2.2b": ("HuggingFaceTB/SmolVLM2-2.2B-Instruct", "smolvlm"),
    "deepseek-vl-1.3b": ("deepseek-community/deepseek-vl-1.3b-chat", "deepseek_vl"),
    "deepseek-vl-7b": ("deepseek-community/deepseek-vl-7b-chat", "deepseek_vl"),
}
DEMO_NAMES = ("demo", "demo-dense")
"""``--model`` names of the bundled demo models (:data:`skipit.demo.DEMO_MODELS`); they win over a
local directory of the same name."""
DTYPES = ("auto", "float32", "float16", "bfloat16")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ResolvedModel:
    """Where a ``--model`` value points: ``source`` is "demo", "alias", "local" or "hub";
    ``location`` is a directory (demo, local) or a hub id (alias, hub)."""

    name: str
    source: str
    location: str


def supported_aliases() -> dict[str, tuple[str, str]]:
    """Aliases whose family has an adapter (``skipit.empirical.adapters``)."""
    try:
        from skipit.empirical.adapters import supported_model_types

        types = set(supported_model_types())
    except ImportError:
        return dict(ALIASES)
    return {k: v for k, v in ALIASES.items() if v[1] in types}


def resolve_model(name: str | None) -> ResolvedModel:
    """Resolve a ``--model`` value (alias | local dir | hub id | demo name | None = the default demo).

    A local directory wins over a hub id of the same spelling. Raises
    :class:`skipit.errors.SkipitError` for anything else, listing the aliases.
    """
    from skipit.errors import SkipitError

    if name is None or str(name) in DEMO_NAMES:
        try:
            from skipit import demo
        except ImportError:
            raise SettingError("the bundled demo model (skipit.demo) is not installed; pass {model}") from None
        name = demo.DEFAULT_DEMO if name is None else str(name)
        directory = demo.DEMO_MODEL_DIR if name == demo.DEFAULT_DEMO else demo.DEMO_MODELS[name]
        if not os.path.isfile(os.path.join(directory, "config.json")):
            raise SettingError(f"the bundled demo model is missing from {{directory}}; retrain it with "
                              f"`python -m skipit.demo.train --model {name} --out {{directory}}` or pass {{model}}",
                              {"directory": os.fspath(directory)})
        return ResolvedModel(name, "demo", os.fspath(directory))
    name = str(name)
    if name in ALIASES:
        return ResolvedModel(name, "alias", ALIASES[name][0])
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise SettingError("{model} {given}: the directory has no config.json; pass a directory written "
                              "by save_pretrained (model and processor)", {"given": name})
        return ResolvedModel(name, "local", os.path.abspath(name))
    if os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise SettingError("{model} {given}: no such directory (a local model is a directory written by "
                          "save_pretrained)", {"given": name})
    if _HUB_ID.match(name):
        return ResolvedModel(name, "hub", name)
    aliases = ", ".join(sorted(supported_aliases()))
    raise SkipitError(f"unknown model {name!r}: not an alias ({aliases}), a local directory or a hub id "
                      "of the form org/name")


def _hub_cli():
    """The hub's command-line program installed here: ``hf`` (huggingface_hub >= 0.34; the only
    one from 1.0 on) or the older ``huggingface-cli``; ``hf`` when neither is found."""
    bindir = os.path.dirname(sys.executable)
    for name in ("hf", "huggingface-cli"):
        if os.path.isfile(os.path.join(bindir, name)) or shutil.which(name):
            return name
    return "hf"


def _hub_reachable(timeout=3.0):
    """Whether a TCP connection to the hub endpoint opens within ``timeout`` seconds.

    Without one, ``from_pretrained`` retries for about 20 s before it looks in the cache; this
    check lets an unreachable hub go to the cache at once. Behind a proxy (``HTTPS_PROXY`` ...)
    a direct connection says nothing, so it answers True and leaves the decision to the hub client.
    """
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(constants.ENDPOINT)
    if not url.hostname:
        return True
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _missing_weights_error(model_id, err, unreachable=False):
    from huggingface_hub import constants

    from skipit.errors import SkipitError

    offline = bool(constants.HF_HUB_OFFLINE)
    if offline:
        why = "offline mode (HF_HUB_OFFLINE=1)"
    elif unreachable:
        why = f"the hub ({constants.ENDPOINT}) could not be reached"
    else:
        why = "the hub could not be reached or has no such model"
    skip = "" if offline else "\n  offline, set HF_HUB_OFFLINE=1 to go to the cache without the hub's connection retries"
    return SkipitError(
        f"model {model_id!r} is not available: {why}, and it is not in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}).\n"
        f"  get it on a machine with network access: {_hub_cli()} download {model_id}\n"
        f"  then copy the cache there to {constants.HF_HUB_CACHE} here (or set HF_HOME), or save the model "
        f"and its processor with save_pretrained and pass that directory: --model DIR{skip}\n"
        f"  (detail: {str(err).splitlines()[0] if str(err) else type(err).__name__})")


def _torch_dtype(dtype, device):
    import torch

    if dtype in (None, "auto"):
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise SettingError(f"{{dtype}} must be one of {', '.join(DTYPES)}, got {{got}}", {"got": repr(dtype)})
    return getattr(torch, dtype)


DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(device: str | None) -> str:
    """The ``--device`` value checked: ``auto``/None -> ``cuda`` when available else ``cpu``;
    ``cpu``, ``cuda``, ``cuda:N`` (N below the number of GPUs) and ``mps`` pass through when
    this machine has them. Anything else raises a one-line :class:`skipit.errors.SkipitError`
    before any model work."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    text = str(device)
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in DEVICE_TYPES:
        raise SettingError("{device} must be auto, cpu, cuda, cuda:N or mps, got {got}", {"got": repr(text)})
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SettingError(f"{{device}} {{given}}: this machine has no CUDA device (torch {torch.__version__}, "
                              f"CUDA build {torch.version.cuda or 'none'}); use {{device}} cpu or auto",
                              {"given": text})
        if parsed.index is not None and parsed.index >= count:
            raise SettingError(f"{{device}} {{given}}: the GPU index must be in [0, {count - 1}] on this machine, "
                              f"got {parsed.index}", {"given": text})
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise SettingError("{device} {given}: MPS is not available on this machine; use {device} cpu or auto",
                          {"given": text})
    return text


DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
_MEMORY = re.compile(r"^(\d+|\d+(\.\d+)?[KMG]i?B)$", re.IGNORECASE)  # accelerate's convert_file_size_to_int


def parse_device_map(value: str | os.PathLike[str] | None) -> str | dict[str, int | str] | None:
    """``--device-map``: one of :data:`DEVICE_MAP_STRATEGIES` (accelerate's placement, given to
    ``from_pretrained``), or a JSON file holding an object ``{module name: device}`` with
    devices a GPU index, ``"cuda:N"``, ``"cpu"`` (CPU offload) or ``"disk"`` (disk offload).
    None stays None. Returns the strategy string or the dict; one-line errors otherwise."""
    import json

    if value is None:
        return None
    text = str(value)
    if text in DEVICE_MAP_STRATEGIES:
        return text
    if not text.endswith(".json") and not os.path.isfile(text):
        raise SettingError(f"{{device_map}} must be one of {', '.join(DEVICE_MAP_STRATEGIES)} or a JSON file "
                          "{module: device}, got {got}", {"got": repr(text)})
    try:
        with open(text, encoding="utf-8") as fh:
            mapping = json.load(fh)
    except OSError as err:
        raise SettingError("{device_map} {given}: cannot read it ({why})", {"given": text, "why": str(err.strerror)}) \
            from None
    except ValueError as err:
        raise SettingError("{device_map} {given}: not JSON ({why})", {"given": text, "why": str(err)}) from None
    if not isinstance(mapping, dict) or not mapping:
        raise SettingError(f"{{device_map}} {{given}} must hold a non-empty JSON object {{module name: device}}, got "
                          f"{type(mapping).__name__}", {"given": text})
    for module, device in mapping.items():
        ok = (isinstance(device, int) and not isinstance(device, bool) and device >= 0) or (
            isinstance(device, str) and (device in ("cpu", "disk", "mps") or re.fullmatch(r"cuda:\d+", device)))
        if not ok:
            raise SettingError("{device_map} {given}: module {module} has device {got}; a device is a GPU "
                              "index >= 0, \"cuda:N\", \"cpu\", \"mps\" or \"disk\"",
                              {"given": text, "module": repr(module), "got": repr(device)})
    return mapping


def parse_max_memory(value: str | None) -> dict[int | str, int | str] | None:
    """``--max-memory "0=20GiB,1=20GiB,cpu=60GiB"`` -> ``{0: "20GiB", 1: "20GiB", "cpu": "60GiB"}``
    (accelerate's ``max_memory``: a cap per GPU index, ``cpu`` or ``mps``; a size is an integer
    number of bytes or a number with a unit KB, MB, GB, KiB, MiB, GiB, the units accelerate
    reads). None stays None; one-line errors otherwise."""

    if value is None:
        return None
    out: dict[int | str, int | str] = {}
    for part in str(value).split(","):
        key, sep, size = (x.strip() for x in part.partition("="))
        if not sep or not key or not size:
            raise SettingError("{max_memory} must look like \"0=20GiB,cpu=60GiB\" (DEVICE=SIZE, comma-separated), "
                              "got {got}", {"got": repr(value)})
        if key.isdigit():
            key = int(key)
        elif key not in ("cpu", "mps"):
            raise SettingError("{max_memory}: a device is a GPU index, cpu or mps, got {key} in {got}",
                              {"key": repr(key), "got": repr(value)})
        if not _MEMORY.match(size):
            raise SettingError("{max_memory}: a size is a number of bytes or a number with a unit KB, MB, GB, KiB, "
                              "MiB or GiB, got {got} for device {key}", {"got": repr(size), "key": str(key)})
        if key in out:
            raise SettingError("{max_memory} names device {key} twice in {got}", {"key": str(key), "got": repr(value)})
        out[key] = int(size) if size.isdigit() else size
    return out


def input_device(model: torch.nn.Module) -> torch.device:
    """The device a batch for ``model`` goes to: accelerate's main device under a device map
    (the first GPU or ``mps`` of ``model.hf_device_map``, else ``cpu``: where offloaded layers
    run), the device of the first parameter otherwise. Device maps put the input embedding
    first, so its inputs need no copy."""
    import torch

    device_map = getattr(model, "hf_device_map", None)
    if device_map:
        devices = [d for d in device_map.values() if d not in ("cpu", "disk")]
        main = devices[0] if devices else "cpu"
        return torch.device(f"cuda:{main}" if isinstance(main, int) else main)
    return next(model.parameters()).device


def to_model_inputs(inputs: Mapping[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    """A batch from the processor, ready for ``model``: every tensor on :func:`input_device`,
    floating ones (the pixels) in the model's dtype; other values unchanged."""
    import torch

    device, dtype = input_device(model), next(model.parameters()).dtype
    return {k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device))
            if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def load_model_and_processor(name: str | None = None, device: str | None = "auto", dtype: str = "auto",
                             device_map: str | Mapping[str, int | str] | None = None,
                             max_memory: Mapping[int | str, int | str] | None = None,
                             offload_folder: str | os.PathLike[str] | None = None) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """Load ``(model, processor, info)`` for a ``--model`` value.

    ``info`` is the certificate's model block: ``{"name", "source", "location", "model_type"}``.
    Real ``from_pretrained`` on hub ids (cache or download; the cache alone, at once, when
    the hub endpoint accepts no connection) and local directories; the
    model is put in eval mode on ``device`` with ``dtype`` (auto: float32 on CPU,
    bfloat16 on CUDA). With ``device_map`` (see :func:`parse_device_map`), ``max_memory``
    (see :func:`parse_max_memory`) and ``offload_folder`` (where ``"disk"`` layers go) the
    placement is accelerate's big-model inference, done by ``from_pretrained``; the model
    is then not moved, and ``device`` only sets the auto dtype. Errors a user can act on
    are :class:`skipit.errors.SkipitError`.
    """
    import transformers
    from transformers import AutoConfig

    from skipit.empirical.adapters import supported_model_types
    from skipit.errors import SkipitError

    from huggingface_hub import constants

    resolved = resolve_model(name)
    location = resolved.location
    hub = {}
    unreachable = False
    if resolved.source in ("alias", "hub") and not constants.HF_HUB_OFFLINE and not _hub_reachable():
        unreachable = True
        hub = {"local_files_only": True}  # the cache only, without the client's retries
    try:
        config = AutoConfig.from_pretrained(location, **hub)
    except (OSError, ValueError) as err:
        if resolved.source in ("alias", "hub"):
            raise _missing_weights_error(location, err, unreachable) from None
        raise SkipitError(f"cannot read the model config in {location}: {str(err).splitlines()[0]}") from None
    model_type = getattr(config, "model_type", None)
    supported = sorted(supported_model_types())
    if model_type not in supported:
        raise SkipitError(f"model type {model_type!r} of {resolved.name} is not supported; supported model "
                          f"types: {', '.join(supported)}")
    if os.path.isdir(os.fspath(location)):

        check_weight_files(location)  # truncated safetensors, missing shards, pickled-only weights: refused
    device = resolve_device(device)
    torch_dtype = _torch_dtype(dtype, device)
    if max_memory is not None and device_map is None:
        raise SettingError("{max_memory} needs {device_map} (auto, balanced, sequential or a JSON file)")
    placement = {}
    if device_map is not None:
        placement = {"device_map": device_map, "max_memory": max_memory, "offload_folder": offload_folder}
    try:
        from transformers import AutoModelForImageTextToText

        try:
            model = AutoModelForImageTextToText.from_pretrained(location, dtype=torch_dtype, **placement, **hub)
        except ValueError as err:
            arch = (getattr(config, "architectures", None) or [None])[0]
            if placement and "offload" in str(err):
                raise SettingError("{device_map}: {why}", {"why": str(err).splitlines()[0]}) from None
            if arch is None or not hasattr(transformers, arch):
                raise
            model = getattr(transformers, arch).from_pretrained(location, dtype=torch_dtype, **placement, **hub)
        processor = _load_processor(location, config, **hub)
    except OSError as err:
        if resolved.source in ("alias", "hub"):
            raise _missing_weights_error(location, err, unreachable) from None
        raise SkipitError(f"cannot load the model or processor from {location}: {str(err).splitlines()[0]}") \
            from None
    if device_map is None:
        model.to(device)
    model.eval()
    info = {"name": resolved.name, "source": resolved.source, "location": location, "model_type": model_type,
            "revision": getattr(model.config, "_commit_hash", None)}  # the hub commit, when loaded from the hub
    return model, processor, info
