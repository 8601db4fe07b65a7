"""Where examples come from: JSONL files, the bundled sets, Hugging Face datasets (opened, not yet read
row by row: :mod:`skipit.empirical.data.columns` does that), and the images of each."""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import TYPE_CHECKING

from skipit.empirical.data.examples import Example, LoadReport, _bad, _check_limit, _raise_bad
from skipit.empirical.settings import SettingError

if TYPE_CHECKING:
    from PIL import Image

REQUIRED_FIELDS = ("image", "question", "answer")


def to_rgb(img: Image.Image) -> Image.Image:
    """An RGB copy of a PIL image, as the model's image processor would see it.

    Transparency (RGBA, LA, PA, palette or grayscale with a transparent colour) is composited
    on white, as ``transformers.image_transforms.convert_to_rgb`` does; 16- and 32-bit integer
    and float grayscale (``I;16``, ``I``, ``F``) is scaled to 8 bits by its type's range
    (65535 for 16-bit, the image maximum for ``I``/``F`` beyond it), not clipped at 255.
    """
    from PIL import Image

    if img.mode == "RGB":
        return img.copy()
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        peak = float(arr.max(initial=0.0))
        if img.mode == "F":
            top = 1.0 if peak <= 1.0 else peak  # floats in [0, 1], else the image's own range
        else:
            top = 65535.0 if peak <= 65535 else peak  # 16-bit data (PNG opens it as I;16 or I)
        scaled = np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _open_image(path_or_file):
    from PIL import Image

    with Image.open(path_or_file) as img:
        img.load()
        return to_rgb(img)


def _verify_image(path_or_file):
    """Check that ``path_or_file`` is an image PIL can read, without decoding its pixels."""
    from PIL import Image

    with Image.open(path_or_file) as img:
        img.verify()


def _check_record(record):
    """Why a parsed line is not an example, or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    missing = [f for f in REQUIRED_FIELDS if f not in record]
    if missing:
        return "missing field" + ("s " if len(missing) > 1 else " ") + ", ".join(repr(m) for m in missing)
    for name in REQUIRED_FIELDS:
        if not isinstance(record[name], str) or not record[name].strip():
            return f"field {name!r} must be a non-empty string, got {record[name]!r}"
    choices = record.get("choices", [])
    if choices is None:
        choices = []
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        return f"field 'choices' must be a list of strings, got {choices!r}"
    return None


def load_jsonl(path: str | os.PathLike[str], skip_bad: bool = False,
               limit: int | None = None) -> tuple[list[Example], LoadReport]:
    """Examples of a JSONL file, with a :class:`LoadReport`.

    Every line is checked; bad lines (invalid JSON, missing or mistyped field, image
    that cannot be read) raise :class:`skipit.errors.SkipitError` listing all of them
    with line numbers, unless ``skip_bad`` (then they are skipped and listed in the
    report). Blank lines are ignored. With ``limit`` N, only the first N good lines
    are returned and only their images are decoded; the images of later lines are
    opened and verified (header and structure, ``PIL.Image.verify``), not decoded.
    """
    from skipit.errors import SkipitError

    _check_limit(limit)
    path = os.fspath(path)
    base = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise SkipitError(f"cannot read data file {path}: {err.strerror or err}") from None
    examples: list[Example] = []
    skipped: list[tuple[int, str]] = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            _bad(skipped, number, f"invalid JSON ({err.msg} at column {err.colno})")
            continue
        problem = _check_record(record)
        if problem:
            _bad(skipped, number, problem)
            continue
        image_path = record["image"] if os.path.isabs(record["image"]) else os.path.join(base, record["image"])
        wanted = limit is None or len(examples) < limit
        try:
            image = _open_image(image_path) if wanted else _verify_image(image_path)
        except Exception as err:  # PIL raises many kinds: all mean "unreadable image"
            _bad(skipped, number, f"unreadable image {record['image']!r} ({type(err).__name__}: {err})")
            continue
        if wanted:
            examples.append(Example(image, record["question"], record["answer"],
                                    list(record.get("choices") or []), source=f"{os.path.basename(path)}:{number}"))
    report = LoadReport(path, skipped, hashlib.sha256(raw).hexdigest())
    if skipped and not skip_bad:
        _raise_bad(skipped, path, "line")
    if not examples:
        raise SkipitError(f"no usable examples in {path}")
    return examples, report


def bundled_names() -> list[str]:
    """Names of the bundled data sets (empty when the demo package is absent)."""
    try:
        from skipit.demo import BUNDLED_DATASETS
    except ImportError:
        return []
    return list(BUNDLED_DATASETS)


def _from_bundled(name, limit=None):
    from skipit.demo import BUNDLED_DATASETS, digit_image, digits_vqa_records

    records = digits_vqa_records(**BUNDLED_DATASETS[name])[:limit]
    return [Example(digit_image(rec["image_index"]).convert("RGB"), str(rec["question"]), str(rec["answer"]),
                    list(rec.get("choices") or []), source=f"bundled:{name}[{i}]", metric=rec.get("metric", ""))
            for i, rec in enumerate(records)]


_DATASET_FILES = (".parquet", ".arrow")
_SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation", "validation": "val"}


def _is_saved_dataset(path):
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, name))
                                       for name in ("dataset_dict.json", "state.json"))


def _data_files(path):
    """Parquet / arrow files of a file or a folder (recursively), sorted."""
    if os.path.isfile(path):
        return [path] if path.endswith(_DATASET_FILES) else []
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files) if f.endswith(_DATASET_FILES)]
    return found


def _import_datasets():
    from skipit.errors import SkipitError

    try:
        import datasets
    except ImportError:
        raise SkipitError("reading a Hugging Face dataset needs the `datasets` package: "
                          "pip install 'skipit[datasets]'") from None
    return datasets


def _hub_snapshot(dataset_id):
    """The local snapshot folder of a hub dataset, from the Hugging Face cache only."""
    from huggingface_hub import constants, snapshot_download

    from skipit.empirical.loading import _hub_cli

    try:
        return snapshot_download(dataset_id, repo_type="dataset", local_files_only=True,
                                 cache_dir=constants.HF_HUB_CACHE)
    except Exception as err:  # LocalEntryNotFoundError and its relatives: not cached
        raise SettingError(
            "dataset {quoted} is not in the Hugging Face cache ({cache}); skipit reads hub datasets from the cache "
            "only, offline.\n  get it on a machine with network access: {download}\n  then copy the cache there to "
            "{cache} here (or set HF_HOME), or save it with datasets' save_to_disk and pass that directory: "
            "{path_or_name} DIR\n  (detail: {detail})",
            {"quoted": repr(dataset_id), "cache": str(constants.HF_HUB_CACHE),
             "download": f"{_hub_cli()} download --repo-type dataset {dataset_id}",
             "detail": str(err).splitlines()[0] if str(err) else type(err).__name__}) from None


def _open_dataset(source, split, subset, default_split=None):
    """``(datasets.Dataset, description, root folder)`` for a saved dataset, data files or a hub id;
    with several splits and no ``split``, ``default_split`` (a preset's) is taken when present."""
    datasets = _import_datasets()
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        if _is_saved_dataset(source):
            loaded, root = datasets.load_from_disk(source), source
        else:
            root = source if os.path.exists(source) else _hub_snapshot(source)
            if not _data_files(root):
                raise SettingError("{path_or_name} {source}: no parquet or arrow files in {root}",
                                   {"source": source, "root": root})
            try:
                loaded = datasets.load_dataset(root, name=subset) if os.path.isdir(root) else \
                    datasets.load_dataset(root[root.rindex(".") + 1:], data_files=[root], split="train")
            except ValueError as err:
                raise SettingError("{path_or_name} {source}: {why}",
                                   {"source": source, "why": str(err).splitlines()[0]}) from None
    finally:
        if bars:
            datasets.enable_progress_bars()
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if split is None and default_split is not None and (default_split in loaded
                                                            or _SPLIT_ALIASES.get(default_split) in loaded):
            split = default_split
        if split is None:
            if len(splits) != 1:
                raise SettingError("{path_or_name} {source} has splits {splits}; choose one with {split}",
                                   {"source": source, "splits": ", ".join(splits)})
            split = splits[0]
        if split not in loaded and _SPLIT_ALIASES.get(split) in loaded:
            split = _SPLIT_ALIASES[split]  # datasets names a "val-*.parquet" split "validation"
        if split not in loaded:
            raise SettingError("{split} must be one of {splits} for {source}, got {got}",
                               {"splits": ", ".join(splits), "source": source, "got": repr(split)})
        loaded = loaded[split]
    elif split is not None:
        raise SettingError("{split} {got}: {source} holds a single dataset, not splits; leave {split} out",
                           {"got": str(split), "source": source})
    name = f"{source}" + (f":{subset}" if subset else "") + (f"[{split}]" if split else "")
    return loaded, name, root if os.path.isdir(root) else os.path.dirname(root)


def _image_cells(value):
    """The image cells of one row: a list (possibly empty) of raw ``{"bytes", "path"}`` / path values."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [v for v in value if v is not None]
    return [value]


class _NamedBytes(io.BytesIO):
    """Image bytes whose repr names where they came from: PIL's "cannot identify image file %r"
    then says ``row 12, column 'image'`` instead of ``<_io.BytesIO object at 0x...>``."""

    def __init__(self, data, where):
        super().__init__(data)
        self.where = where

    def __repr__(self):
        return self.where


def _image_file(cell, root, where="the image cell"):
    """A path or a file object for one image cell; ``where`` names the row and column in errors."""
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return _NamedBytes(cell["bytes"], where)
        cell = cell.get("path")
    if not isinstance(cell, str) or not cell:
        raise ValueError("empty image cell (no bytes, no path)")
    return cell if os.path.isabs(cell) else os.path.join(root, cell)


def _image_digest(cell):
    if isinstance(cell, dict):
        return cell.get("bytes") or str(cell.get("path")).encode()
    return str(cell).encode()


def _check_subset(subset, target):
    """``--subset`` names a dataset configuration: of a hub dataset, or of a folder of data files
    (the configs its README declares, as in a copied hub snapshot). A save_to_disk directory, a
    single parquet / arrow file, a JSONL file or a bundled set has none: refused, not ignored."""
    if subset is None or (os.path.isdir(target) and not _is_saved_dataset(target)):
        return
    if os.path.isdir(target):
        kind = "saved dataset (save_to_disk)"
    elif os.path.isfile(target):
        kind = "data file" if target.endswith(_DATASET_FILES) else "JSONL file"
    elif target in bundled_names():
        kind = "bundled set"
    else:
        return  # a hub dataset id
    raise SettingError(f"{{subset}} applies to hub dataset ids and folders of data files only, got {{got}} "
                       f"for the {kind} {{target}}", {"got": repr(subset), "target": target})
