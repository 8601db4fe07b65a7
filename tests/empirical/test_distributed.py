"""Data-parallel primitives: shards, token-budget batches, and gloo collectives in 2 processes."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from skipit.empirical.distributed import (  # noqa: E402
    SINGLE_PROCESS, DistributedContext, context_from_environment, distributed, gather_objects,
    merge_statistics, run_on_main, shard, sum_counts, token_budget_batches,
)
from skipit.empirical.stats import RunStatistics  # noqa: E402
from skipit.errors import SkipitError  # noqa: E402

RELATIVE = 1e-12


# ---------------------------------------------------------------- shards

@pytest.mark.parametrize("n, world", [(0, 2), (1, 3), (7, 2), (10, 3), (64, 8)])
def test_shards_are_disjoint_and_cover_every_item_once(n, world):
    shards = [shard(n, DistributedContext(rank=r, world_size=world)) for r in range(world)]
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shard_of_a_sequence_is_strided():
    items = list("abcdefg")
    assert shard(items, DistributedContext(rank=1, world_size=3)) == ["b", "e"]
    assert shard(items) == items


# ---------------------------------------------------------------- token budget

def _tokens(batch, lengths):
    return len(batch) * max(lengths[i] for i in batch)


def test_token_budget_batches_respect_both_caps_and_keep_order():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, size=200).tolist()
    batches = token_budget_batches(lengths, batch_size=8, max_batch_tokens=120)
    assert [i for b in batches for i in b] == list(range(200))
    assert all(len(b) <= 8 and _tokens(b, lengths) <= 120 for b in batches)
    # greedy: adding the next example to any batch would break a cap
    for b, nxt in zip(batches, batches[1:]):
        grown = b + [nxt[0]]
        assert len(grown) > 8 or _tokens(grown, lengths) > 120


def test_token_budget_without_cap_is_plain_batching():
    assert token_budget_batches([5] * 7, batch_size=3) == [[0, 1, 2], [3, 4, 5], [6]]


def test_an_example_over_the_budget_runs_alone_with_a_warning():
    said = []
    batches = token_budget_batches([10, 10, 500, 10], batch_size=4, max_batch_tokens=40, warn=said.append)
    assert batches == [[0, 1], [2], [3]]
    assert len(said) == 1 and "500 prompt tokens" in said[0] and "runs alone" in said[0]


def test_an_example_over_the_budget_warns_by_default():
    with pytest.warns(UserWarning, match="more than --max-batch-tokens 8"):
        assert token_budget_batches([9], batch_size=2, max_batch_tokens=8) == [[0]]


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "`batch_size` must be an integer >= 1, got 0"),
    (dict(batch_size=2, max_batch_tokens=0), "`max_batch_tokens` must be None or an integer >= 1, got 0"),
])
def test_token_budget_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        token_budget_batches([3, 4], **kwargs)


def test_token_budget_rejects_empty_prompts():
    with pytest.raises(ValueError, match="got 0 at position 1"):
        token_budget_batches([3, 0], batch_size=2)


# ---------------------------------------------------------------- environment

def test_no_torchrun_variables_is_a_single_process():
    assert context_from_environment({}) is SINGLE_PROCESS
    with distributed(device="cpu", environ={}) as ctx:
        assert ctx is SINGLE_PROCESS and ctx.is_main and not ctx.is_distributed
    assert gather_objects(5) == [5] and sum_counts({"a": 2}) == {"a": 2} and run_on_main(lambda: 7) == 7


def test_torchrun_variables_are_read():
    ctx = context_from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.local_world_size) == (3, 4, 1, 2)
    assert not ctx.is_main


@pytest.mark.parametrize("environ, match", [
    ({"RANK": "4", "WORLD_SIZE": "4"}, r"`rank` must be in \[0, 3\], got 4"),
    ({"RANK": "x", "WORLD_SIZE": "4"}, "RANK must be an integer, got 'x'"),
])
def test_bad_torchrun_variables_are_one_line_errors(environ, match):
    with pytest.raises(SkipitError, match=match):
        context_from_environment(environ)


def test_a_rank_uses_the_gpu_of_its_local_rank(monkeypatch):
    import skipit.empirical.loading as loading

    monkeypatch.setattr(loading, "resolve_device", lambda device: "cuda" if device in ("auto", "cuda") else device)
    ranked = DistributedContext(rank=5, world_size=8, local_rank=1, local_world_size=4, backend="nccl")
    assert ranked.device("auto") == "cuda:1" and ranked.device("cuda") == "cuda:1"
    assert ranked.device("cpu") == "cpu"
    assert DistributedContext().device("cuda") == "cuda"


def test_sum_counts_refuses_mismatched_keys():
    from skipit.empirical.distributed import _sum

    with pytest.raises(ValueError, match="different count keys"):
        _sum([{"a": 1}, {"b": 1}])
    with pytest.raises(TypeError, match="counts must be ints"):
        _sum([1.5, 2.0])


# ---------------------------------------------------------------- 2 gloo processes

def _random_statistics(seed, examples):
    rng = np.random.default_rng(seed)
    stats = RunStatistics(num_layers=3, thresholds=(0.05, 0.1))
    for _ in range(examples):
        for layer in (1, 2, 3):
            for group in ("vision", "text", "answer"):
                stats.add_distances(layer, group, rng.uniform(0, 0.3, size=int(rng.integers(1, 9))))
            stats.add_cka(layer, "vision", *rng.normal(size=3))
            stats.add_attention(layer, rng.uniform(0, 1, size=(1, 4)))
        stats.num_examples += 1
    return stats


def _worker(rank, world, port, out_dir):
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    import torch.distributed as dist

    result = {}
    with distributed(device="cpu") as ctx:
        result["backend"] = ctx.backend
        result["initialised"] = dist.is_initialized()
        mine = shard(11, ctx)
        result["shard"] = mine
        merged = merge_statistics(_random_statistics(seed=rank, examples=len(mine)), ctx)
        result["merged"] = merged.to_dict()
        result["merged_with_empty"] = merge_statistics(
            None if rank == 1 else _random_statistics(seed=rank, examples=2), ctx).to_dict()
        result["counts"] = sum_counts({"examples": len(mine), "changed": [rank, 1]}, ctx)
        result["main"] = run_on_main(lambda: f"written by rank {ctx.rank}", ctx)
        try:
            run_on_main(lambda: (_ for _ in ()).throw(OSError("disk full")), ctx)
        except (OSError, RuntimeError) as err:
            result["error"] = f"{type(err).__name__}: {err}"
    result["closed"] = not dist.is_initialized()
    with open(os.path.join(out_dir, f"rank-{rank}.json"), "w") as fh:
        json.dump(result, fh)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("ranks")
    # fork: the children inherit the imported torch (spawn re-imports it, ~4 s each); no CUDA is used here
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True, start_method=method)
    return [json.loads((out / f"rank-{r}.json").read_text()) for r in range(2)]


def test_two_gloo_ranks_open_and_close_the_group(two_ranks):
    assert [r["backend"] for r in two_ranks] == ["gloo", "gloo"]
    assert all(r["initialised"] and r["closed"] for r in two_ranks)


def test_two_ranks_count_every_example_once(two_ranks):
    assert sorted(two_ranks[0]["shard"] + two_ranks[1]["shard"]) == list(range(11))
    for r in two_ranks:
        assert r["counts"] == {"examples": 11, "changed": [1, 2]}


def test_merged_statistics_equal_one_process_merge(two_ranks):
    """Every rank holds the rank-order merge of both ranks' statistics, equal (1e-12 relative) to
    the same merge done in one process, and the same on both ranks."""
    expected = _random_statistics(0, 6).merge(_random_statistics(1, 5)).to_dict()
    assert two_ranks[0]["merged"] == two_ranks[1]["merged"]
    got = two_ranks[0]["merged"]
    assert got["num_examples"] == 11
    for group, fields in expected["groups"].items():
        for key, value in fields.items():
            np.testing.assert_allclose(got["groups"][group][key], value, rtol=RELATIVE)
    np.testing.assert_allclose(got["attention"]["head_sum"], expected["attention"]["head_sum"], rtol=RELATIVE)


def test_a_rank_without_examples_is_left_out_of_the_merge(two_ranks):
    assert two_ranks[0]["merged_with_empty"] == _random_statistics(0, 2).to_dict()
    assert two_ranks[1]["merged_with_empty"] == two_ranks[0]["merged_with_empty"]


def test_run_on_main_returns_rank0_result_and_fails_everywhere(two_ranks):
    assert [r["main"] for r in two_ranks] == ["written by rank 0"] * 2
    assert two_ranks[0]["error"] == "OSError: disk full"
    assert two_ranks[1]["error"] == "RuntimeError: rank 0 failed: OSError: disk full"
