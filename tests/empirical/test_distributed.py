"""Data-parallel primitives: shards, token-budget batches, and gloo collectives in 2 processes."""

from __future__ import annotations

import json
import os
import socket
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from skipit.empirical.distributed import (  # noqa: E402
    SINGLE_PROCESS, DistributedContext, context_from_environment, distributed, gather_objects,
    merge_statistics, other_rank_dirs, rank_checkpoint_dir, run_everywhere, run_on_main, shard, sum_counts,
    token_budget_batches,
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


def test_examples_over_the_budget_run_alone_with_one_warning():
    said = []
    batches = token_budget_batches([10, 10, 500, 10, 60, 70], batch_size=4, max_batch_tokens=40, warn=said.append)
    assert batches == [[0, 1], [2], [3], [4], [5]]
    assert said == ["examples with more prompt tokens than `max_batch_tokens` = 40 run alone, one example per batch"]
    said.clear()
    token_budget_batches([10, 10], batch_size=4, max_batch_tokens=40, warn=said.append)
    assert said == []


def test_the_budget_warning_is_shown_once_per_process_under_the_default_filter():
    """``--max-batch-tokens 5``: every example is over the cap, and certify batches several
    splits and candidates; the user reads one line, not one per example or per call."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for lengths in ([9, 7, 12], [8], [30, 6, 6, 6]):
            assert token_budget_batches(lengths, batch_size=2, max_batch_tokens=5) == [[i] for i in range(len(lengths))]
    assert [str(w.message) for w in caught] == [
        "examples with more prompt tokens than `max_batch_tokens` = 5 run alone, one example per batch"]
    assert caught[0].category is UserWarning


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "`batch_size` must be in the integers >= 1, got 0"),
    (dict(batch_size=2, max_batch_tokens=0), "`max_batch_tokens` must be None or in the integers >= 1, got 0"),
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

def _random_statistics(seed, examples, stats=None):
    """``examples`` random examples (rng ``seed``) added to ``stats`` (default: a new run)."""
    rng = np.random.default_rng(seed)
    stats = RunStatistics(num_layers=3, thresholds=(0.05, 0.1)) if stats is None else stats
    for _ in range(examples):
        for layer in (1, 2, 3):
            for group in ("vision", "text", "answer"):
                stats.add_distances(layer, group, rng.uniform(0, 0.3, size=int(rng.integers(1, 9))))
            stats.add_cka(layer, "vision", *rng.normal(size=3))
            stats.add_attention(layer, rng.uniform(0, 1, size=(1, 4)))
        stats.num_examples += 1
    return stats


def _as_torchrun_rank(rank, world, port):
    """The variables torchrun sets in rank ``rank`` of ``world`` processes on one machine."""
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})


def _worker(rank, world, port, out_dir):
    _as_torchrun_rank(rank, world, port)
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
        result["everywhere"] = run_everywhere(lambda: ctx.rank * 10, ctx)
        try:
            run_everywhere(lambda: _fail_on_rank_1(ctx), ctx)
        except SkipitError as err:
            result["everywhere_error"] = str(err)
    result["closed"] = not dist.is_initialized()
    with open(os.path.join(out_dir, f"rank-{rank}.json"), "w") as fh:
        json.dump(result, fh)


def _fail_on_rank_1(ctx):
    if ctx.rank == 1:
        raise SkipitError("the checkpoint in rank-1 covers other data")
    return "fine"


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


def _json(value):
    return json.loads(json.dumps(value))


def test_merged_statistics_are_the_rank_order_merge_exactly_and_the_same_on_every_rank(two_ranks):
    """Promised exactly: every rank holds ``rank 0 .merge(rank 1)``, equal to the last bit
    (the same float operations in the same order), whatever order the gather delivers in.
    The other order is a different result (the per-example values are concatenated in
    merge order), so a merge in another order is seen."""
    expected = _json(_random_statistics(0, 6).merge(_random_statistics(1, 5)).to_dict())
    assert two_ranks[0]["merged"] == two_ranks[1]["merged"] == expected
    assert _json(_random_statistics(1, 5).merge(_random_statistics(0, 6)).to_dict()) != expected


def test_merged_statistics_equal_one_process_to_round_off_with_exact_counts(two_ranks):
    """Across world sizes only round-off may differ, not bits: one process adds the 11 examples
    to one run, two ranks add 6 and 5 and merge the sums (Chan's merge groups the float sums
    differently). Counts are equal exactly, float statistics to 1e-12 (relative)."""
    one = _random_statistics(1, 5, stats=_random_statistics(0, 6)).to_dict()
    got = two_ranks[0]["merged"]
    assert got["num_examples"] == one["num_examples"] == 11
    for group, fields in one["groups"].items():
        for key, value in fields.items():
            if np.asarray(value).dtype.kind in "iub":
                assert got["groups"][group][key] == _json(value), (group, key)
            else:
                np.testing.assert_allclose(got["groups"][group][key], value, rtol=RELATIVE, err_msg=f"{group} {key}")
    np.testing.assert_allclose(got["attention"]["head_sum"], one["attention"]["head_sum"], rtol=RELATIVE)


def test_a_rank_without_examples_is_left_out_of_the_merge(two_ranks):
    assert two_ranks[0]["merged_with_empty"] == _random_statistics(0, 2).to_dict()
    assert two_ranks[1]["merged_with_empty"] == two_ranks[0]["merged_with_empty"]


def test_run_on_main_returns_rank0_result_and_fails_everywhere(two_ranks):
    assert [r["main"] for r in two_ranks] == ["written by rank 0"] * 2
    assert two_ranks[0]["error"] == "OSError: disk full"
    assert two_ranks[1]["error"] == "RuntimeError: rank 0: OSError: disk full"


def test_run_everywhere_returns_each_ranks_result_and_fails_on_all(two_ranks):
    """A refusal on rank 1 reaches rank 0 as a SkipitError naming rank 1 (no rank waits forever)."""
    assert [r["everywhere"] for r in two_ranks] == [0, 10]
    assert two_ranks[0]["everywhere_error"] == "rank 1: the checkpoint in rank-1 covers other data"
    assert two_ranks[1]["everywhere_error"] == "the checkpoint in rank-1 covers other data"


def test_rank_checkpoint_dirs(tmp_path):
    """Rank 0 keeps the single-process layout; ranks >= the world size of this run are found."""
    assert rank_checkpoint_dir(str(tmp_path), 0) == str(tmp_path)
    assert rank_checkpoint_dir(str(tmp_path), 3) == str(tmp_path / "rank-3")
    for name in ("rank-1", "rank-2", "rank-10", "rank-x", "other"):
        (tmp_path / name).mkdir()
    assert other_rank_dirs(str(tmp_path), 2) == [str(tmp_path / "rank-2"), str(tmp_path / "rank-10")]
    assert other_rank_dirs(str(tmp_path / "missing"), 1) == []


# ---------------------------------------------------------------- certify in 2 gloo processes

N_EXAMPLES = 13  # odd, so the ranks' shards differ in size


def _settings(**kwargs):
    from skipit.empirical.certificate import CertifySettings

    return CertifySettings(**{"batch_size": 2, "checkpoint_every": 1, "calibration_fraction": 0.4, **kwargs})


def _certify(model_bundle, examples, ctx=None, max_batch_tokens=None, **kwargs):
    from skipit.empirical.certify_run import certify

    model, processor, info = model_bundle
    return certify(model, processor, examples, _settings(max_batch_tokens=max_batch_tokens), progress=False,
                   model_info=info, ctx=ctx, **kwargs)


def _certify_worker(rank, world, port, out_dir, model_bundle, examples, steps):
    """Each step: a certify call under torchrun's variables; ``max_batches`` per rank (None: to the end)."""
    _as_torchrun_rank(rank, world, port)
    torch.set_num_threads(1)
    results = []
    with distributed(device="cpu") as ctx:
        for step in steps:
            limit = step.get("max_batches")
            results.append(_certify(model_bundle, examples, ctx, checkpoint_dir=step["checkpoint_dir"],
                                    max_batches=None if limit is None else limit[rank]))
    with open(os.path.join(out_dir, f"certify-rank-{rank}.json"), "w") as fh:
        json.dump(results, fh)


def _run_ranks(world, model_bundle, examples, steps, out_dir):
    import torch.multiprocessing as mp

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_certify_worker, args=(world, _free_port(), str(out_dir), model_bundle, examples, steps),
                       nprocs=world, join=True, start_method=method)
    return [json.loads((out_dir / f"certify-rank-{r}.json").read_text()) for r in range(world)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny LLaVA, 13 digit examples, one process's certificate, and the 2-rank runs:
    a whole run; an interrupted one (rank 0 after 2 batches, rank 1 after 1) then resumed by 2 ranks;
    the same interruption resumed by 1 process."""
    from skipit.empirical.loading import load_model_and_processor
    from skipit.empirical.testing import save_tiny_vlm
    from tests.empirical.certify_helpers import digit_examples

    root = tmp_path_factory.mktemp("certify-ranks")
    bundle = load_model_and_processor(save_tiny_vlm("llava", root / "model", seed=1), device="cpu")
    examples = digit_examples(N_EXAMPLES)
    single = _certify(bundle, examples)
    whole, resumed = root / "whole", root / "resumed"
    ranks = _run_ranks(2, bundle, examples, [
        {"checkpoint_dir": str(whole)},
        {"checkpoint_dir": str(resumed), "max_batches": [2, 1]},
        {"checkpoint_dir": str(resumed)},
    ], root)
    other = root / "other-world"
    _run_ranks(2, bundle, examples, [{"checkpoint_dir": str(other), "max_batches": [1, 2]}], root)
    by_one = _certify(bundle, examples, checkpoint_dir=str(other))
    return {"single": single, "ranks": ranks, "whole": whole, "resumed": resumed, "by_one": by_one,
            "other": other, "bundle": bundle, "examples": examples}


def _without_world_size(certificate):
    certificate = json.loads(json.dumps(certificate))
    certificate["run"].pop("world_size")
    return certificate


def test_two_ranks_give_one_process_certificate(tiny_run):
    """Statistics equal one process's to 1e-12 (relative), verdicts and verified counts are
    identical, both ranks return the same certificate, and run.world_size = 2."""
    from tests.empirical.test_certify import _assert_same_certificate

    single = json.loads(json.dumps(tiny_run["single"]))
    rank0, rank1 = (r[0] for r in tiny_run["ranks"])
    assert rank0 == rank1
    assert rank0["run"]["world_size"] == 2 and single["run"]["world_size"] == 1
    _assert_same_certificate(_without_world_size(rank0), _without_world_size(single), rel=RELATIVE)
    assert rank0["verification"]["configs"] == single["verification"]["configs"]
    for mode in ("late_entry", "early_exit", "freeze"):
        assert rank0[mode]["certified_layers"] == single[mode]["certified_layers"]


def test_two_ranks_count_each_statistics_example_once(tiny_run):
    """The ranks' checkpoints hold disjoint example sets whose union is the statistics split."""
    from skipit.empirical.certificate import split_indices

    stats_idx, _ = split_indices(N_EXAMPLES, _settings())
    rank0 = json.loads((tiny_run["whole"] / "checkpoint.json").read_text())["done"]
    rank1 = json.loads((tiny_run["whole"] / "rank-1" / "checkpoint.json").read_text())["done"]
    assert not set(rank0) & set(rank1)
    assert sorted(rank0 + rank1) == sorted(stats_idx)
    assert tiny_run["ranks"][0][0]["data"]["statistics_examples"] == len(stats_idx)


def test_interrupted_ranks_resume_to_the_same_certificate(tiny_run):
    """Both ranks stopped early (at different points, as a killed run leaves them) return None;
    rerunning the same command resumes to the whole run's certificate."""
    from tests.empirical.test_certify import _assert_same_certificate

    for rank in tiny_run["ranks"]:
        assert rank[1] is None
        _assert_same_certificate(rank[2], rank[0], rel=RELATIVE)


def test_resume_with_another_world_size_works(tiny_run):
    """A 2-rank checkpoint resumed by one process: rank 1's directory is merged, nothing is
    counted twice, and the certificate is one process's (world_size 1)."""
    from tests.empirical.test_certify import _assert_same_certificate

    _assert_same_certificate(json.loads(json.dumps(tiny_run["by_one"])), json.loads(json.dumps(tiny_run["single"])),
                             rel=RELATIVE)


def test_overlapping_rank_checkpoints_are_refused(tiny_run, tmp_path):
    """Two checkpoints holding one example would count it twice: refused in one line."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_run["whole"], broken)
    shutil.copytree(broken / "rank-1", broken / "rank-2")
    with pytest.raises(SkipitError, match="two rank checkpoints both hold example"):
        _certify(tiny_run["bundle"], tiny_run["examples"], checkpoint_dir=str(broken))


# ---------------------------------------------------------------- evaluate in 2 gloo processes

def _evaluate_worker(rank, world, port, out_dir, model_bundle, examples, kwargs):
    _as_torchrun_rank(rank, world, port)
    torch.set_num_threads(1)
    from skipit.empirical.evaluate import evaluate

    model, processor, _ = model_bundle
    with distributed(device="cpu") as ctx:
        report = evaluate(model, processor, examples, ctx=ctx, **kwargs)
    with open(os.path.join(out_dir, f"evaluate-rank-{rank}.json"), "w") as fh:
        json.dump(report, fh)


def _without_seconds(value):
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_without_seconds(v) for v in value]
    return value


def test_two_ranks_evaluate_like_one_process(tiny_run, tmp_path):
    """Accuracies, answer-change rates, per-layer statistics (to 1e-12) and Theorem 6 of a 2-rank
    evaluate equal one process's, on both ranks; with a token cap, batches split but answers stay."""
    import torch.multiprocessing as mp

    from skipit.empirical.evaluate import evaluate
    from tests.empirical.test_certify import _assert_same_certificate

    model, processor, _ = tiny_run["bundle"]
    examples = tiny_run["examples"][:7]
    kwargs = dict(layers=[2, 3], batch_size=2, theorem6_examples=1, theorem6_iters=2)
    single = json.loads(json.dumps(evaluate(model, processor, examples, **kwargs)))
    capped = evaluate(model, processor, examples, max_batch_tokens=40, **kwargs)
    assert [r["accuracy"] for r in capped["rows"]] == [r["accuracy"] for r in single["rows"]]
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_evaluate_worker, args=(2, _free_port(), str(tmp_path), tiny_run["bundle"], examples, kwargs),
                       nprocs=2, join=True, start_method=method)
    ranks = [json.loads((tmp_path / f"evaluate-rank-{r}.json").read_text()) for r in range(2)]
    assert _without_seconds(ranks[0]) == _without_seconds(ranks[1])
    _assert_same_certificate(_without_seconds(ranks[0]), _without_seconds(single), path="report", rel=RELATIVE)


# ---------------------------------------------------------------- the command under torchrun

@pytest.mark.slow  # three fresh Python processes import torch: ~10-30 s
def test_torchrun_certify_command_writes_once_with_world_size_2(tiny_run, tmp_path):
    """``torchrun --nproc-per-node 2 -m skipit certify`` (gloo): rank 0 alone writes the
    certificate and plots, each rank checkpoints its shard, run.world_size is 2, and the
    certificate's statistics equal one process's."""
    import shutil
    import subprocess
    import sys

    from tests.empirical.certify_helpers import write_digit_jsonl

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this python")
    model_dir = tiny_run["whole"].parent / "model"
    data = write_digit_jsonl(str(tmp_path / "data"), 6)
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    command = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "skipit", "certify",
               "--model", str(model_dir), "--data", data, "--out", str(out), "--batch-size", "2", "--threads", "1",
               "--no-progress", "--no-verify"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("wrote ") == 1  # rank 0 alone prints and writes
    certificate = json.loads((out / "certificate.json").read_text())
    assert certificate["run"]["world_size"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["attention.png", "certificate.json", "checkpoint",
                                                     "redundancy.png"]
    ranks = [json.loads(p.read_text())["done"] for p in (out / "checkpoint" / "checkpoint.json",
                                                         out / "checkpoint" / "rank-1" / "checkpoint.json")]
    assert sorted(ranks[0] + ranks[1]) == list(range(6)) and ranks[0] and ranks[1]
    from skipit.empirical.certificate import CertifySettings
    from skipit.empirical.certify_run import certify
    from skipit.empirical.data import load_examples
    from tests.empirical.test_certify import _assert_same_certificate

    model, processor, info = tiny_run["bundle"]
    examples, _ = load_examples(data)
    single = json.loads(json.dumps(certify(model, processor, examples, CertifySettings(batch_size=2, verify=False),
                                           progress=False, model_info=info)))
    _assert_same_certificate(certificate["layers"], single["layers"], path="layers", rel=RELATIVE)


def test_certify_under_a_token_cap_gives_the_uncapped_certificate(tiny_run):
    """``max_batch_tokens`` below two prompts runs one example per batch (statistics, layer
    contributions, answers): the certificate equals the uncapped one (floats to batching noise),
    with the cap recorded."""
    from skipit.empirical.distributed import prompt_lengths
    from tests.empirical.test_certify import _assert_same_certificate

    model, processor, _ = tiny_run["bundle"]
    examples = tiny_run["examples"]
    lengths = prompt_lengths(processor, examples, model)
    cap = max(lengths)
    assert 2 * min(lengths) > cap  # so every batch holds one example, and none is over the cap
    capped = json.loads(json.dumps(_certify(tiny_run["bundle"], examples, max_batch_tokens=cap)))
    assert capped["run"].pop("max_batch_tokens") == cap
    # one example per batch against padded batches: float32 activations and attention shares differ
    # in their last bits (measured: 2e-7 relative on the attention share's variance, 1.3e-9 on the
    # design effect); a real batching bug moves them by far more than 1e-6
    _assert_same_certificate(capped, json.loads(json.dumps(tiny_run["single"])), rel=1e-6)
