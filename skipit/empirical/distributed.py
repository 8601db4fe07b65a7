"""Data-parallel runs under ``torchrun``: each process takes a disjoint shard of the examples.

``torchrun --nproc-per-node K -m skipit certify ...`` starts ``K`` processes with the
environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`distributed` reads them, opens the
``torch.distributed`` process group (gloo on CPU, nccl on CUDA, chosen from the device)
and closes it on exit. Without those variables (a plain ``python -m skipit``) it yields a
single-process context and every function here is the identity or a no-op, so a plain run
is unchanged.

What a data-parallel run relies on:

* :func:`shard`: rank ``r`` of ``W`` takes the items ``r, r + W, r + 2W, ...``; the shards
  are disjoint, cover every item once, and depend only on ``(r, W)``;
* :func:`merge_statistics`: every rank's :class:`~skipit.empirical.stats.RunStatistics` is
  gathered as its ``to_dict()`` (float64 values round-trip exactly through pickling) and
  merged with :meth:`RunStatistics.merge` in rank order, the same on every rank. Every
  field is a sum over examples, so the merged statistics equal one process's up to the
  order of float64 additions (relative differences ~1e-16 per addition);
* :func:`sum_counts`: integer counts (examples, changed predictions, ...) summed exactly;
* :func:`run_on_main`: rank 0 alone runs a function (writes a file) and every rank gets its
  result, or the exception it raised, so no rank waits forever for a failed writer.

:func:`token_budget_batches` (batches under a cap on padded prompt tokens) lives here too:
it is the other half of dividing the work of a run.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

__all__ = [
    "DistributedContext", "SINGLE_PROCESS", "barrier", "batch_positions", "context_from_environment", "distributed",
    "gather_objects", "merge_statistics", "other_rank_dirs", "prompt_lengths", "rank_checkpoint_dir",
    "run_everywhere", "run_on_main", "shard", "sum_counts", "token_budget_batches", "under_torchrun",
]

#: the variables torchrun sets in each process it starts (torch.distributed.run)
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a run: ``rank`` in ``0..world_size-1``, ``local_rank`` on its
    node (its GPU is ``cuda:local_rank``), ``local_world_size`` processes on its node, and the
    ``backend`` of the open process group (None: a single process, no process group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None

    def __post_init__(self):
        if self.world_size < 1:
            raise ValueError(f"`world_size` must be >= 1, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"`rank` must be in [0, {self.world_size - 1}], got {self.rank}")
        if self.local_rank < 0 or self.local_world_size < 1:
            raise ValueError(f"`local_rank` must be >= 0 and `local_world_size` >= 1, got {self.local_rank} "
                             f"and {self.local_world_size}")

    @property
    def is_main(self) -> bool:
        """True on rank 0, the one process that writes the run's files."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True when a process group is open (under torchrun)."""
        return self.backend is not None

    def device(self, requested: str | None = "auto") -> str:
        """This rank's device for ``--device requested``: ``auto`` and ``cuda`` mean
        ``cuda:LOCAL_RANK`` under torchrun when CUDA is there (one GPU per process); anything
        else is checked by :func:`skipit.empirical.loading.resolve_device` and returned."""
        return _rank_device(requested, self.local_rank if self.is_distributed else None)


def _rank_device(requested, local_rank):
    from skipit.empirical.loading import resolve_device

    device = resolve_device(requested)
    if local_rank is not None and device == "cuda":
        return f"cuda:{local_rank}"
    return device


SINGLE_PROCESS = DistributedContext()


def under_torchrun(environ: dict | None = None) -> bool:
    """True when the environment holds torchrun's variables (``RANK`` and ``WORLD_SIZE`` at least)."""
    environ = os.environ if environ is None else environ
    return "RANK" in environ and "WORLD_SIZE" in environ


def _env_int(environ, name, default=None):
    from skipit.errors import SkipitError

    value = environ.get(name)
    if value is None:
        if default is None:
            found = ", ".join(sorted(k for k in TORCHRUN_VARIABLES if k in environ))
            raise SkipitError(f"torchrun variable {name} is not set (found {found}); start the run with torchrun")
        return default
    try:
        return int(value)
    except ValueError:
        raise SkipitError(f"torchrun variable {name} must be an integer, got {value!r}") from None


def context_from_environment(environ: dict | None = None) -> DistributedContext:
    """The context described by torchrun's variables in ``environ`` (default ``os.environ``);
    :data:`SINGLE_PROCESS` outside torchrun. Opens nothing (its ``backend`` is None)."""
    from skipit.errors import SkipitError

    environ = os.environ if environ is None else environ
    if not under_torchrun(environ):
        return SINGLE_PROCESS
    world = _env_int(environ, "WORLD_SIZE")
    rank = _env_int(environ, "RANK")
    local_rank = _env_int(environ, "LOCAL_RANK", default=rank)
    local_world = _env_int(environ, "LOCAL_WORLD_SIZE", default=world)
    try:
        return DistributedContext(rank=rank, world_size=world, local_rank=local_rank,
                                  local_world_size=local_world)
    except ValueError as err:
        raise SkipitError(f"torchrun variables RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local_rank}: "
                          f"{err}") from None


def choose_backend(device: str) -> str:
    """``nccl`` for a CUDA device, ``gloo`` otherwise (CPU)."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


@contextlib.contextmanager
def distributed(device: str | None = "auto", environ: dict | None = None) -> Iterator[DistributedContext]:
    """Context manager: this process's :class:`DistributedContext`, with the process group open.

    Outside torchrun it yields :data:`SINGLE_PROCESS` and opens nothing. Under torchrun it
    opens the default process group from the ``env://`` variables, with ``nccl`` when this
    rank's device (``device``, resolved as :meth:`DistributedContext.device`) is CUDA (and
    binds the rank to ``cuda:LOCAL_RANK``), ``gloo`` otherwise, and destroys the group on exit,
    also when the block raises. A group opened by the caller is used as it is and left open.
    """
    import torch
    import torch.distributed as dist

    environ = os.environ if environ is None else environ
    if not under_torchrun(environ):
        yield SINGLE_PROCESS
        return
    plan = context_from_environment(environ)
    if dist.is_available() and dist.is_initialized():
        yield DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                                 local_rank=plan.local_rank, local_world_size=plan.local_world_size,
                                 backend=dist.get_backend())
        return
    rank_device = _rank_device(device, plan.local_rank)
    backend = choose_backend(rank_device)
    kwargs = {}
    if backend == "nccl":
        torch.cuda.set_device(rank_device)
        kwargs["device_id"] = torch.device(rank_device)
    dist.init_process_group(backend=backend, rank=plan.rank, world_size=plan.world_size, **kwargs)
    try:
        yield DistributedContext(rank=plan.rank, world_size=plan.world_size, local_rank=plan.local_rank,
                                 local_world_size=plan.local_world_size, backend=backend)
    except BaseException:
        dist.destroy_process_group()  # no barrier: other ranks may be gone
        raise
    # no rank tears the group down while another still talks to it (a rank that exited early
    # made gloo's threads abort the other: "terminate called without an active exception")
    dist.barrier()
    dist.destroy_process_group()


# --------------------------------------------------------------------------------------
# dividing the work
# --------------------------------------------------------------------------------------

def shard(items: Sequence | int, ctx: DistributedContext = SINGLE_PROCESS) -> list:
    """Rank ``ctx.rank``'s items: ``items[rank::world_size]`` (``items`` an int ``n``: of ``range(n)``).

    Disjoint across ranks, their union is ``items``, and each rank's share differs from
    another's by at most one item.
    """
    if isinstance(items, int):
        if items < 0:
            raise ValueError(f"`items` must be a sequence or an int >= 0, got {items}")
        items = range(items)
    return list(items[ctx.rank::ctx.world_size])


def token_budget_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None = None,
                         warn: Callable[[str], Any] | None = None) -> list[list[int]]:
    """Consecutive batches of positions ``0..len(lengths)-1`` under two caps.

    A batch holds at most ``batch_size`` examples and, when ``max_batch_tokens`` is given, at
    most that many padded prompt tokens: ``len(batch) * max(lengths in batch)`` (the size of
    the padded ``input_ids``, which sets the activations' memory). The order of the examples
    is kept, and a batch is closed as soon as the next example would break a cap, so batches
    are the longest prefixes that fit. An example longer than ``max_batch_tokens`` alone is
    run as a batch of one. If there is any, ``warn(message)`` is called once (default
    ``warnings.warn``), with a message that depends on ``max_batch_tokens`` only: Python's
    default warning filter then shows it once per process however many examples, batches
    and calls (statistics, each verified candidate) it concerns.
    """
    from skipit.empirical.settings import RunSettings, check_setting, field_check

    for name, value in (("batch_size", batch_size), ("max_batch_tokens", max_batch_tokens)):
        check_setting(name, value, field_check(RunSettings, name))  # the ranges of the settings
    warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    alone = False
    for position, length in enumerate(lengths):
        length = int(length)
        if length < 1:
            raise ValueError(f"`lengths` must be >= 1 tokens, got {length} at position {position}")
        if max_batch_tokens is not None and length > max_batch_tokens:
            if current:
                batches.append(current)
            current, longest, alone = [], 0, True
            batches.append([position])
            continue
        wider = max(longest, length)
        too_many = len(current) + 1 > batch_size
        too_long = max_batch_tokens is not None and (len(current) + 1) * wider > max_batch_tokens
        if current and (too_many or too_long):
            batches.append(current)
            current, wider = [], length
        current.append(position)
        longest = wider
    if current:
        batches.append(current)
    if alone:
        warn(f"examples with more prompt tokens than `max_batch_tokens` = {max_batch_tokens} run alone, "
             "one example per batch")
    return batches


# --------------------------------------------------------------------------------------
# collectives (identities in a single process)
# --------------------------------------------------------------------------------------

def prompt_lengths(processor, examples, model=None) -> list[int]:
    """Prompt tokens of each example (its ``input_ids`` alone, image placeholders expanded), for
    :func:`token_budget_batches`; costs one processor call per example."""
    from skipit.empirical.data import build_inputs

    return [int(build_inputs(processor, [example], model)["input_ids"].shape[-1]) for example in examples]


def batch_positions(processor, examples, model, batch_size: int, max_batch_tokens: int | None = None) -> list[list[int]]:
    """Positions ``0..len(examples)-1`` in consecutive batches of at most ``batch_size``, and,
    with ``max_batch_tokens``, of at most that many padded prompt tokens
    (:func:`token_budget_batches` over :func:`prompt_lengths`)."""
    # without a token cap the lengths do not matter: no processor call
    lengths = prompt_lengths(processor, examples, model) if max_batch_tokens is not None else [1] * len(examples)
    return token_budget_batches(lengths, batch_size, max_batch_tokens)


# --------------------------------------------------------------------------------------
# checkpoints of a data-parallel run
# --------------------------------------------------------------------------------------

RANK_DIR = "rank-{}"


def rank_checkpoint_dir(checkpoint_dir: str, rank: int) -> str:
    """Where rank ``rank`` keeps its checkpoint: ``checkpoint_dir`` itself for rank 0 (so a
    single-process run's layout is unchanged), ``checkpoint_dir/rank-K`` for rank K >= 1."""
    return checkpoint_dir if rank == 0 else os.path.join(checkpoint_dir, RANK_DIR.format(rank))


def other_rank_dirs(checkpoint_dir: str, world_size: int) -> list[str]:
    """Checkpoint directories of ranks ``>= world_size`` left by an earlier run with more
    processes, in rank order (their examples count as done; their statistics are merged)."""
    if not os.path.isdir(checkpoint_dir):
        return []
    ranks = []
    for name in os.listdir(checkpoint_dir):
        head, _, tail = name.partition("-")
        if head == "rank" and tail.isdigit() and int(tail) >= world_size:
            ranks.append(int(tail))
    return [rank_checkpoint_dir(checkpoint_dir, r) for r in sorted(ranks)]


def gather_objects(obj: Any, ctx: DistributedContext = SINGLE_PROCESS) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``all_gather_object``); ``[obj]`` alone."""
    if not ctx.is_distributed:
        return [obj]
    import torch.distributed as dist

    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistributedContext = SINGLE_PROCESS) -> None:
    """Wait until every rank reaches this point (nothing to wait for in a single process)."""
    if ctx.is_distributed:
        import torch.distributed as dist

        dist.barrier()


def merge_statistics(statistics, ctx: DistributedContext = SINGLE_PROCESS):
    """The :class:`~skipit.empirical.stats.RunStatistics` of every rank merged, the same on every rank.

    ``statistics`` is this rank's (None: it saw no example). Gathered as ``to_dict()`` and
    merged with ``RunStatistics.merge`` in rank order; None when no rank saw an example. The
    result is exactly (to the bit) ``rank 0 .merge(rank 1) .merge(...)`` on every rank. Runs
    with different world sizes group the float sums differently: their statistics agree to
    round-off (counts exactly), not bit for bit.
    """
    from skipit.empirical.stats import RunStatistics

    parts = gather_objects(None if statistics is None else statistics.to_dict(), ctx)
    total = None
    for part in parts:
        if part is None:
            continue
        part = RunStatistics.from_dict(part)
        total = part if total is None else total.merge(part)
    return total


def sum_counts(counts, ctx: DistributedContext = SINGLE_PROCESS):
    """Integer counts summed over ranks, exactly: an int, a list of ints (elementwise) or a dict
    of those (by key; every rank must give the same keys)."""
    parts = gather_objects(counts, ctx)
    return _sum(parts)


def _sum(parts):
    first = parts[0]
    if isinstance(first, dict):
        keys = list(first)
        for part in parts[1:]:
            if list(part) != keys:
                raise ValueError(f"ranks gave different count keys: {keys} and {list(part)}")
        return {key: _sum([part[key] for part in parts]) for key in keys}
    if isinstance(first, (list, tuple)):
        if any(len(part) != len(first) for part in parts):
            raise ValueError(f"ranks gave count lists of lengths {[len(p) for p in parts]}")
        return [_sum(list(column)) for column in zip(*parts)]
    if isinstance(first, bool) or not all(isinstance(p, int) for p in parts):
        raise TypeError(f"counts must be ints (or lists / dicts of ints), got {[type(p).__name__ for p in parts]}")
    return sum(parts)


def run_everywhere(fn: Callable[[], Any], ctx: DistributedContext = SINGLE_PROCESS) -> Any:
    """Run ``fn()`` on every rank; if it raises on any rank, every rank raises.

    The failing rank re-raises its own exception; the others raise a
    :class:`~skipit.errors.SkipitError` (when the failure was one: a refused resume, bad data)
    or a ``RuntimeError`` naming the first failing rank and its message. Use it where a rank
    that fails alone would leave the others waiting in the next collective.
    """
    if not ctx.is_distributed:
        return fn()
    from skipit.errors import SkipitError

    result, error, report = None, None, None
    try:
        result = fn()
    except BaseException as err:  # noqa: BLE001 - reported to every rank, then re-raised
        error = err
        report = (isinstance(err, SkipitError), f"{type(err).__name__}: {err}" if not isinstance(
            err, SkipitError) else str(err))
    reports = gather_objects(report, ctx)
    if error is not None:
        raise error
    failed = [(rank, r) for rank, r in enumerate(reports) if r is not None]
    if failed:
        rank, (user_error, message) = failed[0]
        raise (SkipitError if user_error else RuntimeError)(f"rank {rank}: {message}")
    return result


def run_on_main(fn: Callable[[], Any], ctx: DistributedContext = SINGLE_PROCESS) -> Any:
    """Run ``fn()`` on rank 0 only and return its result on every rank.

    If ``fn`` raises on rank 0, every rank raises: rank 0 the exception itself, the others a
    :class:`~skipit.errors.SkipitError` (when rank 0's was one) or a ``RuntimeError`` quoting
    it, so no rank is left waiting for a writer that failed.
    """
    if not ctx.is_distributed:
        return fn()
    import torch.distributed as dist

    from skipit.errors import SkipitError

    box: list = [None]
    error = None
    if ctx.is_main:
        try:
            box[0] = ("ok", fn())
        except BaseException as err:  # noqa: BLE001 - reported to every rank, then re-raised
            error = err
            user = isinstance(err, SkipitError)
            box[0] = ("error", user, str(err) if user else f"{type(err).__name__}: {err}")
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    if box[0][0] == "error":
        _, user, message = box[0]
        raise (SkipitError if user else RuntimeError)(f"rank 0: {message}")
    return box[0][1]
