"""What every model-running command shares: one parent parser and the helpers that apply it.

A command adopts the shared options with one argument to ``add_parser`` (and drops its own
copies of these options, which argparse would otherwise reject as conflicting)::

    p = subparsers.add_parser("certify", parents=[model_options(samples=512, settings=CertifySettings)], ...)

:func:`skipit.cli.main` applies ``-q/--quiet`` around every command (:func:`output_options`),
so a command only reads ``args.no_progress`` (true under ``--quiet`` too) and ``args.quiet``.
Nothing here imports torch or transformers at import time.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

from skipit.empirical.loading import DTYPES
from skipit.errors import SkipitError

DEFAULT_DATA = "digits-reason-test"
"""The bundled set of the default demo model (``--model demo-dense`` runs on ``digits-test``)."""
SMALL_MODEL_PARAMETERS = 50_000_000


def model_options(*, samples: int = 200, settings: type | None = None) -> argparse.ArgumentParser:
    """A fresh parent parser (``add_help=False``) with the options every model-running command shares.

    Options: ``--model``, ``--data``, ``--samples``, ``--batch-size``, ``--max-batch-tokens``,
    ``--skip-bad``, ``--device``, ``--dtype``, ``--threads``, ``-q/--quiet`` and
    ``--no-progress``. The command's default for ``--samples`` is an argument; ``--batch-size``
    and ``--max-batch-tokens`` come from the fields of the command's ``settings`` class
    (:class:`skipit.empirical.settings.RunSettings` by default). A new parser is built on each
    call because argparse shares a parent's option objects with its children.
    """
    from skipit.empirical.settings import RunSettings, add_setting_options

    p = argparse.ArgumentParser(add_help=False)
    run = p.add_argument_group("model and data")
    run.add_argument("--model", default=None, metavar="NAME|HUB_ID|PATH",
                     help="alias (e.g. llava-1.5-7b), hub id, or directory saved with save_pretrained "
                          "(default: the bundled demo model)")
    run.add_argument("--samples", type=int, default=samples, metavar="N",
                     help=f"a random sample of at least N questions, drawn by image: every question of a drawn "
                          f"image comes along (default: {samples}; 0 = all)")
    run.add_argument("--sample-seed", type=int, default=0, metavar="S",
                     help="seed of the --samples draw (default: 0)")
    add_setting_options(run, settings or RunSettings, only=("batch_size", "max_batch_tokens"))
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:0 ... (default: auto)")
    run.add_argument("--dtype", default="auto", choices=DTYPES,
                     help="model dtype (default: auto = float32 on CPU, bfloat16 on CUDA)")
    run.add_argument("--threads", default="auto", metavar="N",
                     help="CPU threads for torch (default: auto = 1 for models under 50M parameters, whose "
                          "small matrix products only lose time to thread start-up and contention, else "
                          "torch's default)")
    from skipit.empirical.data import add_data_arguments

    add_data_arguments(p, default_data=DEFAULT_DATA)
    place = p.add_argument_group("placement of a model larger than one device (accelerate)")
    place.add_argument("--device-map", default=None, metavar="auto|balanced|sequential|FILE.json",
                       help="spread the model over the GPUs (and CPU / disk offload) with accelerate's "
                            "big-model inference: a strategy, or a JSON file {module: GPU index | cpu | disk} "
                            "(default: none, the whole model on --device)")
    place.add_argument("--max-memory", default=None, metavar="0=20GiB,cpu=60GiB",
                       help="with --device-map: the most memory each device may hold (GPU index, cpu, mps)")
    out = p.add_argument_group("terminal output")
    out.add_argument("-q", "--quiet", action="store_true",
                     help="no progress bars or progress lines, and no weight-loading bar or warnings from "
                          "transformers; results and errors are still printed")
    out.add_argument("--no-progress", action="store_true", help="no progress bar (other messages stay)")
    return p


def parse_threads(value: str) -> int | None:
    """``--threads``: None for ``auto``, else the integer (>= 1); anything else is a SkipitError."""
    if value == "auto":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise SkipitError(f"--threads must be 'auto' or an integer >= 1, got {value!r}")
    return n


def set_threads(threads: int | None, model: Any) -> None:
    """Apply ``--threads`` to torch (process-wide). None = auto: one thread for a model under
    :data:`SMALL_MODEL_PARAMETERS` parameters on the CPU, else torch's default is left alone."""
    import torch

    if threads is None:
        on_cpu = next(model.parameters()).device.type == "cpu"
        if on_cpu and sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS:
            torch.set_num_threads(1)
    else:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Within the block, transformers shows no progress bar (the "Loading weights" bar and
    huggingface_hub's download bars) and logs errors only; both settings are restored after.
    A no-op when transformers is not installed (the theory-only install)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    bar_was_on, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_was_on:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def output_options(args: argparse.Namespace) -> Iterator[None]:
    """Apply ``-q/--quiet`` for the duration of a command: it implies ``--no-progress`` and
    silences transformers (:func:`quiet_transformers`). A namespace without these options
    (``skipit bounds``) passes through unchanged."""
    if not getattr(args, "quiet", False):
        yield
        return
    if hasattr(args, "no_progress"):
        args.no_progress = True
    with quiet_transformers():
        yield


def placement_from_args(args: argparse.Namespace, ctx: Any = None) -> dict:
    """``--device``, ``--device-map`` and ``--max-memory`` checked (one-line errors, no model work)
    and turned into the keyword arguments of ``load_model_and_processor``: ``device`` (this
    rank's: ``cuda:LOCAL_RANK`` under torchrun), ``device_map``, ``max_memory``.

    ``--device-map`` spreads one copy of the model over every GPU of the node, so it is refused
    with several torchrun processes per node (``--nproc-per-node`` > 1): run one process per
    node (``--nnodes N --nproc-per-node 1``) instead. ``--device`` other than ``auto`` is
    refused with ``--device-map`` (the map places the model)."""
    from skipit.empirical.loading import parse_device_map, parse_max_memory, resolve_device

    device_map = parse_device_map(getattr(args, "device_map", None))
    max_memory = parse_max_memory(getattr(args, "max_memory", None))
    if max_memory is not None and device_map is None:
        raise SkipitError("--max-memory needs --device-map (auto, balanced, sequential or a JSON file)")
    if device_map is not None and args.device not in (None, "auto"):
        raise SkipitError(f"--device {args.device} and --device-map both place the model; drop one "
                          "(--device-map decides where every layer goes)")
    if device_map is not None and ctx is not None and ctx.local_world_size > 1:
        raise SkipitError(f"--device-map with {ctx.local_world_size} torchrun processes on this node: each would "
                          "spread its own copy over the same GPUs; use --nproc-per-node 1 (one process per "
                          "node, its model over the node's GPUs) or drop --device-map")
    device = ctx.device(args.device) if ctx is not None else resolve_device(args.device)
    return {"device": device, "device_map": device_map, "max_memory": max_memory}


@contextlib.contextmanager
def offload_folder(out_dir: str, ctx: Any = None) -> Iterator[str]:
    """A folder for the layers a device map sends to ``"disk"``: ``out_dir/offload-rank-K``,
    removed when the block ends (the files are a copy of the weights, as large as the model's
    offloaded part); it is made only if accelerate writes there."""
    import os
    import shutil

    path = os.path.join(out_dir, f"offload-rank-{0 if ctx is None else ctx.rank}")
    existed = os.path.exists(path)
    try:
        yield path
    finally:
        if not existed:
            shutil.rmtree(path, ignore_errors=True)


def load_model_and_data(args: argparse.Namespace, command: str, ctx: Any = None, offload: str | None = None) -> tuple:
    """The data of ``--data``/``--samples``/``--skip-bad`` (checked first, before any model
    work), then the model of ``--model``/``--device``/``--dtype`` (and ``--device-map``,
    ``--max-memory``: :func:`placement_from_args`; ``ctx`` the run's
    :class:`skipit.empirical.distributed.DistributedContext`) with ``--threads`` applied.
    Layers a device map sends to disk go to the folder ``offload`` (from :func:`offload_folder`,
    whose block the caller keeps open while it uses the model).
    Returns ``(model, processor, info, examples, report)``. ``--data`` is required with
    ``--model`` unless ``--task`` names a preset (whose dataset id is then read from the cache)."""
    if args.samples < 0:
        raise SkipitError(f"--samples must be >= 0 (0 = all), got {args.samples}")
    if args.data is None and _demo_data(args.model) is None and getattr(args, "task", None) is None:
        raise SkipitError("--data is needed with --model (the bundled data sets fit the demo models only)")
    parse_threads(getattr(args, "threads", "auto"))
    placement_from_args(args, ctx)
    examples, report = load_data(args, command)
    model, processor, info, examples = load_model(args, command, examples, ctx, offload)
    return model, processor, info, examples, report


def load_model(args: argparse.Namespace, command: str, examples: list, ctx: Any = None,
               offload: str | None = None) -> tuple:
    """The model half of :func:`load_model_and_data`: the model of ``--model``/``--dtype``/placement
    loaded, ``--threads`` applied, and ``examples`` checked against it
    (:func:`check_data_for_model`). Returns ``(model, processor, info, examples)``."""
    from skipit.empirical.loading import load_model_and_processor

    threads = parse_threads(getattr(args, "threads", "auto"))
    model, processor, info = load_model_and_processor(args.model, dtype=args.dtype, offload_folder=offload,
                                                      **placement_from_args(args, ctx))
    set_threads(threads, model)
    return model, processor, info, check_data_for_model(args, command, model, processor, examples)


def _demo_data(model):
    """The bundled data set of the demo model ``--model`` names (None: the default demo), else None."""
    try:
        from skipit.demo import default_data_for
    except ImportError:
        return None
    return default_data_for(model)


def load_data(args: argparse.Namespace, command: str) -> tuple:
    """``(examples, report)`` of the data options (:func:`skipit.empirical.data.add_data_arguments`),
    every line or row checked before any model work; skipped ones (``--skip-bad``) reported.
    ``--samples N`` (N > 0) keeps a seeded random sample of whole images (``--sample-seed``) with
    at least N questions (:func:`skipit.empirical.units.sample_units`), never the first N rows:
    every row is read, and its image decoded, to know the images."""
    import sys

    from skipit.empirical.data import examples_from_args
    from skipit.empirical.units import sample_units, unit_ids

    everything = argparse.Namespace(**dict(vars(args), samples=0))
    examples, report = examples_from_args(everything, default_data=_demo_data(args.model) or DEFAULT_DATA)
    for n, why in report.skipped:
        print(f"skipit {command}: skipped {report.unit} {n} of {report.source}: {why}", file=sys.stderr)
    if args.samples:
        examples = [examples[i] for i in sample_units(unit_ids(examples), args.samples, args.sample_seed)]
    return examples, report


def check_data_for_model(args: argparse.Namespace, command: str, model: Any, processor: Any, examples: list) -> list:
    """The examples this model can take (:func:`skipit.empirical.data.check_examples_for`: its
    family's image limits, the processor, the context length); with ``--skip-bad`` the others are
    reported and dropped, else the run stops naming them."""
    import sys

    from skipit.empirical.data import check_examples_for

    kept, dropped = check_examples_for(model, processor, examples, skip_bad=getattr(args, "skip_bad", False))
    for source, why in dropped:
        print(f"skipit {command}: skipped {source}: {why}", file=sys.stderr)
    return kept
