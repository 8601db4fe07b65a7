"""The ``skipit`` command line: its conventions (version, exit status, help, the shared options
and ``--quiet``), and ``skipit certify`` end to end on tiny saved models of every family."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

import skipit
from skipit.cli import COMMANDS, EXIT_STATUS, main
from skipit.commands._common import model_options, output_options, parse_threads, quiet_transformers, set_threads
from skipit.errors import RunError, SkipitError
from tests.empirical.certify_helpers import write_digit_jsonl

FAMILIES = ["llava", "llava_next", "qwen2_5_vl", "gemma3", "idefics3", "smolvlm", "deepseek_vl"]
FAST = ["--samples", "4", "--batch-size", "2", "--no-progress"]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """`--threads auto` sets torch's (process-wide) thread count: give it back after each test."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# --- conventions shared by every command -----------------------------------------------------


def test_version_flag_prints_the_installed_metadata_version(capsys):
    """`skipit --version` and `skipit.__version__` both read the installed metadata (pyproject's `version`)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    installed = importlib.metadata.version("skipit")
    assert capsys.readouterr().out == f"skipit {installed}\n"
    assert skipit.__version__ == installed


def test_version_is_written_once_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert "version" not in project.get("dynamic", [])
    assert project["version"] == importlib.metadata.version("skipit"), "reinstall: `make install`"


def test_uninstalled_source_tree_gets_a_placeholder_version():
    code = ("import importlib.metadata as m\n"
            "def missing(name): raise m.PackageNotFoundError(name)\n"
            "m.version = missing\n"
            "import skipit; print(skipit.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "0+unknown"


def test_top_level_help_says_what_each_command_does_and_the_exit_status(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for name, help_text in COMMANDS.items():
        assert f"{name} {help_text}" in text, name
    for code, meaning in EXIT_STATUS.items():
        assert f"{code} {meaning}" in text
    assert "--version" in text


def test_no_command_is_a_usage_error_with_exit_2(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "a COMMAND is required" in err and "certify" in err


def test_argparse_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bounds", "--no-such-option"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


@pytest.mark.parametrize(("error", "status"), [(SkipitError("--eps must be in (0, 1), got 2.0"), 2),
                                               (RunError("--out 'o' is locked by pid 7"), 1)])
def test_usage_errors_exit_2_and_failed_runs_exit_1_in_one_line(error, status, monkeypatch, capsys):
    def run(args):
        raise error

    monkeypatch.setattr("skipit.commands.bounds.run", run)
    assert main(["bounds"]) == status
    assert capsys.readouterr().err == f"skipit bounds: error: {error}\n"


def test_ctrl_c_exits_130(monkeypatch, capsys):
    def run(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("skipit.commands.bounds.run", run)
    assert main(["bounds"]) == 130
    assert capsys.readouterr().err == "skipit bounds: interrupted\n"


def _command_parser(**defaults):
    parser = argparse.ArgumentParser(prog="skipit x")
    parser.add_subparsers().add_parser("x", parents=[model_options(**defaults)])
    return parser


def test_parent_parser_gives_each_command_its_own_defaults():
    """Two commands' parents do not share option objects: one's defaults never leak into the other's."""
    from skipit.empirical.settings import CertifySettings, EvaluateSettings

    certify = _command_parser(samples=512, settings=CertifySettings).parse_args(["x"])
    evaluate = _command_parser(settings=EvaluateSettings).parse_args(["x"])
    assert (certify.samples, certify.batch_size) == (512, 16)
    assert (evaluate.samples, evaluate.batch_size) == (200, 32)
    assert vars(certify).keys() == vars(evaluate).keys() >= {
        "model", "data", "samples", "batch_size", "skip_bad", "device", "dtype", "threads", "quiet", "no_progress"}
    assert (certify.model, certify.data, certify.device, certify.dtype, certify.threads) == (
        None, None, "auto", "auto", "auto")
    assert not (certify.quiet or certify.no_progress or certify.skip_bad)


def test_parent_parser_parses_short_quiet_and_names_defaults_in_help(capsys):
    args = _command_parser(samples=512).parse_args(["x", "-q", "--dtype", "bfloat16", "--threads", "2"])
    assert args.quiet and args.dtype == "bfloat16" and args.threads == "2"
    with pytest.raises(SystemExit):
        _command_parser(samples=512).parse_args(["x", "--help"])
    assert "(default: 512; 0 = all)" in capsys.readouterr().out


def test_parse_threads_accepts_auto_and_positive_integers_only():
    assert parse_threads("auto") is None and parse_threads("3") == 3
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(SkipitError, match=f"--threads must be 'auto' or an integer >= 1, got '{bad}'"):
            parse_threads(bad)


def test_set_threads_auto_is_one_thread_for_a_small_cpu_model_and_explicit_counts_are_kept():
    import torch

    small = torch.nn.Linear(4, 4)
    torch.set_num_threads(2)
    set_threads(None, small)
    assert torch.get_num_threads() == 1
    set_threads(2, small)
    assert torch.get_num_threads() == 2


def test_quiet_implies_no_progress_and_restores_transformers_settings():
    from transformers.utils import logging as hf_logging

    before = (hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity())
    assert before[0], "transformers' progress bar should be on by default"
    args = argparse.Namespace(quiet=True, no_progress=False)
    with output_options(args):
        assert args.no_progress
        assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.get_verbosity() == hf_logging.ERROR
    assert (hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()) == before
    loud = argparse.Namespace(quiet=False, no_progress=False)
    with output_options(loud):
        assert hf_logging.is_progress_bar_enabled() and not loud.no_progress


def test_quiet_silences_the_weight_loading_bar(capfd):
    """Loading the demo model draws transformers' "Loading weights" bar on stderr, except under quiet."""
    import skipit.demo as demo
    from transformers import AutoModelForImageTextToText

    AutoModelForImageTextToText.from_pretrained(demo.DEMO_MODEL_DIR)
    assert "Loading weights" in capfd.readouterr().err
    with quiet_transformers():
        AutoModelForImageTextToText.from_pretrained(demo.DEMO_MODEL_DIR)
    assert "Loading weights" not in capfd.readouterr().err


# --- skipit certify end to end -----------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_digit_jsonl(tmp_path_factory.mktemp("data"), 4)


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    from skipit.empirical.testing import save_tiny_vlm

    return save_tiny_vlm("llava", tmp_path_factory.mktemp("llava"), seed=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_certify_a_saved_tiny_model_of_each_family(family, data, tmp_path, capsys):
    from skipit.empirical.testing import save_tiny_vlm

    model_dir = save_tiny_vlm(family, tmp_path / "model")
    out = tmp_path / "out"
    assert main(["certify", "--model", model_dir, "--data", data, "--out", str(out), *FAST]) == 0
    cert = json.loads((out / "certificate.json").read_text())
    assert cert["schema"] == "skipit.certificate/3"
    assert cert["model"]["model_type"] == family and cert["model"]["source"] == "local"
    assert cert["model"]["num_layers"] == 4 and len(cert["layers"]) == 4
    assert _examples_used(cert) == 4 and len(cert["data"]["sha256"]) == 64
    assert all(layer["vision"]["tokens"] > 0 and layer["text"]["tokens"] > 0 for layer in cert["layers"])
    assert (out / "redundancy.png").stat().st_size > 10_000 and (out / "attention.png").stat().st_size > 10_000
    table = capsys.readouterr().out
    assert "late entry:" in table and "early exit:" in table and "certificate.json" in table


def test_no_model_certifies_the_bundled_demo_model_on_its_test_data(tmp_path, capsys):
    """The README's main command (here on 32 examples): demo model, bundled test split."""
    import skipit.demo as demo

    assert (demo.DEMO_MODEL_DIR / "config.json").is_file(), "the bundled demo model is missing from the package"
    assert main(["certify", "--out", str(tmp_path), "--samples", "32", "--no-progress"]) == 0
    cert = json.loads((tmp_path / "certificate.json").read_text())
    assert cert["model"]["source"] == "demo" and cert["model"]["num_layers"] >= 12
    assert cert["data"]["source"] == "bundled:digits-reason-test" and _examples_used(cert) == 32
    assert cert["layers"][0]["vision"]["tokens"] == cert["data"]["statistics_examples"] * 16


def _examples_used(cert):
    """Examples a certificate used: its statistics half plus its held-out calibration half."""
    return cert["data"]["statistics_examples"] + cert["data"]["calibration_examples"]


def _fails(argv, capsys, match):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("skipit certify: error: ") and "Traceback" not in err
    for text in match:
        assert text in err, err
    return err


def test_unknown_alias_exits_2(capsys, tmp_path):
    _fails(["certify", "--model", "llava-1.5-8b", "--out", str(tmp_path), *FAST], capsys,
           ["unknown model 'llava-1.5-8b'", "llava-1.5-7b", "qwen2.5-vl-7b"])


def test_unknown_model_type_exits_2(capsys, tmp_path, data):
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(
        tmp_path / "bert")
    _fails(["certify", "--model", str(tmp_path / "bert"), "--data", data, "--out", str(tmp_path / "o"), *FAST],
           capsys, ["model type 'bert'", "supported model types:", "llava_next", "qwen2_5_vl"])


def test_bad_data_stops_before_any_model_work(capsys, tmp_path):
    """Bad lines are listed with line numbers, and the model is never loaded (the --model
    directory does not even exist; data are checked first)."""
    path = write_digit_jsonl(tmp_path, 3, extra_lines=[
        '{"image": "img/0.png", "answer": "1"}', "{not json", '{"image": "img/9.png", "question": "q", "answer": "a"}'])
    err = _fails(["certify", "--model", "./no/such/model", "--data", path, "--out", str(tmp_path / "o"), *FAST],
                 capsys, ["3 bad line(s)", "line 4: missing field 'question'", "line 5: invalid JSON",
                          "line 6: unreadable image 'img/9.png'", "--skip-bad"])
    assert "no such directory" not in err
    assert not (tmp_path / "o").exists()


def test_skip_bad_certifies_the_good_lines(capsys, tmp_path, llava_dir):
    path = write_digit_jsonl(tmp_path, 4, extra_lines=["{not json", '{"image": "img/0.png"}'])
    out = tmp_path / "o"
    assert main(["certify", "--model", llava_dir, "--data", path, "--out", str(out), "--skip-bad", *FAST]) == 0
    err = capsys.readouterr().err
    assert "skipped line 5" in err and "skipped line 6" in err
    cert = json.loads((out / "certificate.json").read_text())
    assert _examples_used(cert) == 4 and cert["data"]["skipped_lines"] == [5, 6]


def test_bad_settings_exit_2(capsys, tmp_path, llava_dir, data):
    base = ["certify", "--model", llava_dir, "--data", data, "--out", str(tmp_path)]
    _fails(base + ["--proximal-t", "0.03"], capsys, ["--proximal-t must be one of the captured --thresholds"])
    _fails(base + ["--eps", "0"], capsys, ["--eps must be in (0, 1), got 0.0"])
    _fails(base + ["--batch-size", "0"], capsys, ["--batch-size must be", ">= 1, got 0"])


def test_quiet_certify_prints_its_results_but_no_progress_and_no_loading_bar(tmp_path, llava_dir, data, capfd):
    base = ["certify", "--model", llava_dir, "--data", data, "--samples", "4", "--batch-size", "2"]
    assert main([*base, "--out", str(tmp_path / "loud")]) == 0
    loud = capfd.readouterr()
    assert "Loading weights" in loud.err and "late entry:" in loud.out
    assert main([*base, "--out", str(tmp_path / "quiet"), "-q"]) == 0
    quiet = capfd.readouterr()
    assert "Loading weights" not in quiet.err and "it/s" not in quiet.err
    assert "late entry:" in quiet.out and "certificate.json" in quiet.out


def test_bfloat16_run(tmp_path, llava_dir, data):
    """Model in bfloat16: pixels are cast to the model's dtype; statistics stay float64."""
    assert main(["certify", "--model", llava_dir, "--data", data, "--out", str(tmp_path), "--dtype", "bfloat16",
                 *FAST]) == 0
    cert = json.loads((tmp_path / "certificate.json").read_text())
    assert cert["run"]["dtype"] == "bfloat16"
    assert all(0.0 <= layer["vision"]["mean_cosine_distance"] <= 2.0 for layer in cert["layers"])


def test_threads_option(tmp_path, llava_dir, data, capsys):
    import torch

    base = ["certify", "--model", llava_dir, "--data", data, "--out", str(tmp_path), *FAST]
    assert main(base + ["--threads", "1"]) == 0
    assert json.loads((tmp_path / "certificate.json").read_text())["run"]["threads"] == 1
    assert torch.get_num_threads() == 1
    capsys.readouterr()
    _fails(base + ["--threads", "0"], capsys, ["--threads must be 'auto' or an integer >= 1, got '0'"])


def test_failed_run_leaves_no_certificate(tmp_path, llava_dir, data, monkeypatch, capsys):
    """A run that fails midway (third batch) writes no certificate.json; its checkpoint holds
    the batches done, and a rerun resumes from it."""
    import skipit.empirical.data as data_module

    real = data_module.build_inputs
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4 + 3:  # after the up-front check of the 4 examples, the third batch
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(data_module, "build_inputs", flaky)
    out = tmp_path / "o"
    argv = ["certify", "--model", llava_dir, "--data", data, "--out", str(out), "--samples", "4",
            "--batch-size", "1", "--checkpoint-every", "1", "--no-progress"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(argv)
    assert not (out / "certificate.json").exists()
    assert len(json.loads((out / "checkpoint" / "checkpoint.json").read_text())["done"]) == 2  # batches 1, 2
    monkeypatch.setattr(data_module, "build_inputs", real)
    assert main(argv) == 0
    assert _examples_used(json.loads((out / "certificate.json").read_text())) == 4


def test_ctrl_c_then_rerun_gives_the_uninterrupted_certificate(tmp_path, llava_dir, data, monkeypatch, capsys):
    import skipit.empirical.data as data_module

    argv = ["--model", llava_dir, "--data", data, "--samples", "4", "--batch-size", "1", "--checkpoint-every", "1",
            "--no-progress"]
    assert main(["certify", "--out", str(tmp_path / "whole"), *argv]) == 0
    real = data_module.build_inputs
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4 + 4:  # after the up-front check of the 4 examples, the fourth batch
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(data_module, "build_inputs", interrupted)
    capsys.readouterr()
    assert main(["certify", "--out", str(tmp_path / "cut"), *argv]) == 130
    err = capsys.readouterr().err
    assert "rerun the same command to resume" in err and "Traceback" not in err
    assert not (tmp_path / "cut" / "certificate.json").exists()
    monkeypatch.setattr(data_module, "build_inputs", real)
    assert main(["certify", "--out", str(tmp_path / "cut"), *argv]) == 0
    whole = json.loads((tmp_path / "whole" / "certificate.json").read_text())
    resumed = json.loads((tmp_path / "cut" / "certificate.json").read_text())
    assert resumed == whole


def test_missing_weights_offline_is_a_clear_error_in_a_fresh_process(tmp_path):
    """Real process, offline, empty cache: exit code 2, no traceback, the id, the cache dir, the fix."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hub"))
    proc = subprocess.run([sys.executable, "-m", "skipit", "certify", "--model", "qwen2.5-vl-7b", "--data",
                           write_digit_jsonl(tmp_path, 1), "--out", str(tmp_path / "o"), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "'Qwen/Qwen2.5-VL-7B-Instruct' is not available" in proc.stderr
    assert str(tmp_path / "hub") in proc.stderr
    assert "hf download Qwen/Qwen2.5-VL-7B-Instruct" in proc.stderr  # huggingface_hub >= 1.0: `hf`


def test_certify_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["certify", "--help"])
    text = capsys.readouterr().out
    for option in ("--model", "--data", "--out", "--samples", "--batch-size", "--thresholds", "--confidence",
                   "--device", "--dtype", "--skip-bad", "--resume", "--eps", "--proximal-t",
                   "--attention-threshold", "--threads"):
        assert option in text


# --- error paths of a run and --json --------------------------------------------------------------

def _fail_on_call(n, error):
    calls = []

    def patched(real):
        def wrapper(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise error
            return real(*args, **kwargs)
        return wrapper
    return patched


def test_ctrl_c_before_the_first_checkpoint_says_nothing_was_saved(tmp_path, llava_dir, data, monkeypatch, capsys):
    """Interrupted in the first statistics batch: no checkpoint exists, and the message says so
    (no folder to resume from is named); the --out the run created is removed."""
    from skipit.empirical.certify_run import Checkpoint

    monkeypatch.setattr(Checkpoint, "add", _fail_on_call(1, KeyboardInterrupt)(Checkpoint.add))  # in batch 1
    out = tmp_path / "cut"
    argv = ["certify", "--model", llava_dir, "--data", data, "--out", str(out), *FAST, "-q", "--checkpoint-every", "1"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert ("skipit certify: interrupted before the first checkpoint (one is saved every 1 batches of statistics): "
            "nothing was saved; rerun the same command to start again\n") in err
    assert "resume" not in err and not out.exists()


def test_ctrl_c_after_a_checkpoint_names_what_it_holds(tmp_path, llava_dir, data, monkeypatch, capsys):
    from skipit.empirical.certify_run import Checkpoint

    monkeypatch.setattr(Checkpoint, "add", _fail_on_call(2, KeyboardInterrupt)(Checkpoint.add))  # in batch 2
    out = tmp_path / "cut"
    argv = ["certify", "--model", llava_dir, "--data", data, "--out", str(out), *FAST, "-q", "--checkpoint-every", "1",
            "--no-verify"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert (f"the statistics of 2 examples (up to the last checkpoint) are in {out / 'checkpoint'}; rerun the "
            "same command to resume") in err  # batch 1 of 2 examples
    assert len(json.loads((out / "checkpoint" / "checkpoint.json").read_text())["done"]) == 2


def test_a_checkpoint_write_failing_midway_exits_1_in_one_line(tmp_path, llava_dir, data, monkeypatch, capsys):
    """An --out that becomes unwritable (or a full disk) at the second checkpoint: one line, exit 1, no
    traceback; the first checkpoint is kept and a rerun resumes from it to the whole certificate."""
    from skipit.empirical.stats import RunStatistics

    real = RunStatistics.save
    monkeypatch.setattr(RunStatistics, "save", _fail_on_call(2, PermissionError(13, "Permission denied"))(real))
    out = tmp_path / "o"
    argv = ["certify", "--model", llava_dir, "--data", data, "--out", str(out), "--samples", "4", "--batch-size", "1",
            "--checkpoint-every", "1", "-q", "--no-verify"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"skipit certify: error: cannot write the checkpoint in {out / 'checkpoint'} "
                          "(Permission denied); the last good checkpoint (statistics of 1 examples) is kept")
    assert json.loads((out / "checkpoint" / "checkpoint.json").read_text())["done"] == [0]
    monkeypatch.setattr(RunStatistics, "save", real)
    assert main(argv) == 0 and (out / "certificate.json").exists()


def test_results_that_cannot_be_written_exit_1_in_one_line(tmp_path, llava_dir, data, monkeypatch, capsys):
    import skipit.empirical.certify_run as certify_run

    monkeypatch.setattr(certify_run, "write_certificate", _fail_on_call(1, OSError(28, "No space left on device"))(
        certify_run.write_certificate))
    out = tmp_path / "o"
    assert main(["certify", "--model", llava_dir, "--data", data, "--out", str(out), *FAST, "-q", "--no-verify"]) == 1
    err = capsys.readouterr().err
    assert err == (f"skipit certify: error: cannot write the results into --out {out} (No space left on device); "
                   "the checkpoint in it is kept: fix the directory and rerun the same command (it resumes from "
                   "the checkpoint)\n")
    assert (out / "checkpoint" / "checkpoint.json").exists()


def test_certify_json_prints_what_certificate_json_holds(tmp_path, llava_dir, data, capsys):
    """``skipit certify --json``: stdout is the certificate, key for key as in ``certificate.json``."""
    out = tmp_path / "o"
    assert main(["certify", "--model", llava_dir, "--data", data, "--out", str(out), *FAST, "--json"]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed == json.loads((out / "certificate.json").read_text())
    assert list(printed) == list(json.loads((out / "certificate.json").read_text()))
    assert "wrote" in captured.err
