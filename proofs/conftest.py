"""Every `proofs/<result>.py` is a test module: its `test_step_*` functions check each step."""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=200, deadline=None)
settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_collect_file(parent, file_path):
    if (
        file_path.suffix == ".py"
        and file_path.name != "conftest.py"
        and not file_path.name.startswith("test_")
        and not parent.session.isinitpath(file_path)  # given on the command line: pytest collects it already
    ):
        return pytest.Module.from_parent(parent, path=file_path)
