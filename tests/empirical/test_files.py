"""The output directory of a run: up-front checks, one run at a time, nothing empty left by a failure."""

import json
import os
import socket
import subprocess
import sys

import pytest

from skipit.empirical.files import (
    LOCK_NAME, cleanup_on_failure, output_directory, output_lock, prepare_output_dir,
)
from skipit.errors import SkipitError


def test_out_that_is_an_existing_file_is_refused_in_one_line(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("{}")
    with pytest.raises(SkipitError, match=r"^--out .*report\.json is an existing file, not a directory") as info:
        prepare_output_dir(target)
    assert "\n" not in str(info.value)
    assert target.read_text() == "{}"


def test_out_under_a_file_is_refused_and_names_the_file(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(SkipitError, match=r"--out .*afile/a/b lies under .*afile, which is a file"):
        prepare_output_dir(blocker / "a" / "b")


def test_out_on_a_read_only_file_system_is_refused_and_nothing_is_created():
    if not os.path.isdir("/proc"):
        pytest.skip("needs /proc")
    with pytest.raises(SkipitError, match=r"^--stats-out /proc/skipit-h7-out is not writable \("):
        prepare_output_dir("/proc/skipit-h7-out", what="--stats-out")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes everywhere")
def test_out_in_a_directory_without_write_permission_is_refused(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    with pytest.raises(SkipitError, match="is not writable"):
        prepare_output_dir(locked / "out")
    assert not (locked / "out").exists()


def test_prepare_creates_missing_parents_and_returns_the_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    got = prepare_output_dir(os.path.join("a", "b"))
    assert got == str(tmp_path / "a" / "b") and os.path.isdir(got)
    assert os.listdir(got) == []


def test_second_lock_on_one_out_refuses_and_names_the_first(tmp_path):
    with output_lock(tmp_path, command="skipit certify first"):
        with pytest.raises(SkipitError) as info:
            with output_lock(tmp_path, command="skipit certify second"):
                pass  # pragma: no cover
    message = str(info.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
    assert "command: skipit certify first" in message and "started 20" in message
    assert "\n" not in message
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_held_by_another_process_refuses(tmp_path):
    code = ("import sys, time; from skipit.empirical.files import output_lock\n"
            "with output_lock(sys.argv[1], command='holder'):\n"
            "    print('held', flush=True); sys.stdin.readline()\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SkipitError, match=rf"pid {holder.pid} on host .*command: holder"):
            with output_lock(tmp_path):
                pass  # pragma: no cover
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with output_lock(tmp_path):  # released with its process
        pass


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _plant_lock(directory, pid):
    owner = {"pid": pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00", "command": "old"}
    (directory / LOCK_NAME).write_text(json.dumps(owner))


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    _plant_lock(tmp_path, _dead_pid())
    with output_lock(tmp_path, command="new") as lock:
        assert json.loads(open(lock).read())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_without_flock_a_dead_owner_is_taken_over_and_a_live_one_refuses(tmp_path, monkeypatch):
    import fcntl

    def no_flock(fd, op):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    _plant_lock(tmp_path, _dead_pid())
    with output_lock(tmp_path, command="new"):
        pass
    _plant_lock(tmp_path, os.getppid())
    with pytest.raises(SkipitError, match=rf"in use by another skipit run \(pid {os.getppid()} on host"):
        with output_lock(tmp_path):
            pass  # pragma: no cover


def test_failed_run_leaves_no_empty_out_but_keeps_results_and_user_directories(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with output_directory(out):
            assert (out / LOCK_NAME).exists()
            raise RuntimeError("boom")
    assert not (tmp_path / "new").exists()

    with pytest.raises(RuntimeError):
        with output_directory(out):
            (out / "statistics.npz").write_bytes(b"partial")
            raise RuntimeError("boom")
    assert (out / "statistics.npz").exists() and not (out / LOCK_NAME).exists()

    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(RuntimeError):
        with output_directory(mine):
            raise RuntimeError("boom")
    assert mine.is_dir()


def test_cleanup_removes_a_directory_holding_only_a_lock_file(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with cleanup_on_failure(out):
            out.mkdir()
            (out / LOCK_NAME).write_text("{}")
            raise KeyboardInterrupt
    assert not out.exists()


def test_successful_run_keeps_its_directory_and_drops_the_lock(tmp_path):
    with output_directory(tmp_path / "out") as directory:
        pass
    assert os.listdir(directory) == []


def test_lock_on_a_missing_directory_is_refused_in_one_line(tmp_path):
    with pytest.raises(SkipitError, match=r"^--out .*missing: cannot open the lock file \.skipit\.lock \("):
        with output_lock(tmp_path / "missing"):
            pass  # pragma: no cover


def _race(monkeypatch, lock_path, then=None):
    """The previous owner removes the lock file between our open and our flock (once); ``then()``
    runs right after, as a third run would (it may put a new lock file at the path)."""
    import skipit.empirical.files as files

    flock, raced = files._flock, []

    def racing(fd):
        if not raced:
            raced.append(fd)
            os.unlink(lock_path)
            if then is not None:
                then()
        return flock(fd)

    monkeypatch.setattr(files, "_flock", racing)
    return raced


def test_a_lock_file_removed_before_our_flock_is_replaced_by_the_one_at_the_path(tmp_path, monkeypatch):
    """Locked, the removed file is an unlinked inode nobody else can see: we lock the new file
    at the path instead, so the path names us and a second run is refused."""
    _plant_lock(tmp_path, _dead_pid())
    raced = _race(monkeypatch, tmp_path / LOCK_NAME)
    with output_lock(tmp_path, command="ours") as lock:
        assert raced
        assert json.loads(open(lock).read())["command"] == "ours"
        monkeypatch.undo()
        with pytest.raises(SkipitError, match=r"in use by another skipit run .*command: ours"):
            with output_lock(tmp_path, command="second"):
                pass  # pragma: no cover
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_run_that_locks_the_new_file_first_keeps_the_lock(tmp_path, monkeypatch):
    """Previous owner gone, a third run created and locked a new file at the path before our
    flock: our flock on the old inode succeeds, but the path is the third run's, so we refuse."""
    import fcntl

    third = []

    def third_run():
        fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now",
                                 "command": "third"}).encode())
        third.append(fd)

    _plant_lock(tmp_path, _dead_pid())
    _race(monkeypatch, tmp_path / LOCK_NAME, then=third_run)
    try:
        with pytest.raises(SkipitError, match=r"in use by another skipit run .*command: third"):
            with output_lock(tmp_path, command="ours"):
                pass  # pragma: no cover
        assert json.loads((tmp_path / LOCK_NAME).read_text())["command"] == "third"
    finally:
        os.close(third[0])
