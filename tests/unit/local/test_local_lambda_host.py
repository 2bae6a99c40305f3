"""Running a deployed function's handler in-process, the way Lambda would run it."""

from __future__ import annotations

import os
import sys
import time

import pytest

from function_asset import handler_name, task_spec
from spottrain.local.lambda_host import FunctionSpec, LambdaHost

HANDLER = """
import os

COLD_STARTS = []
COLD_STARTS.append(1)  # module code runs once per cold start, not per invocation

class BucketNameTaken(Exception):
    pass

def handler(event, context):
    print("handling", event.get("n"))
    if event.get("fail"):
        raise BucketNameTaken("exec_name: bucket spottrain-demo belongs to another account; rename the job")
    return {"cold_starts": len(COLD_STARTS), "stack": os.environ["STACK_NAME"],
            "remaining_ms": context.get_remaining_time_in_millis()}
"""


def _spec(code_sha: str = "v1") -> FunctionSpec:
    return task_spec("Stack-TasksTask-1", HANDLER, code_sha=code_sha, environment={"STACK_NAME": "SpotTrainLocal"})


@pytest.fixture
def host(tmp_path):
    lambda_host = LambdaHost(tmp_path, {"AWS_REGION": "us-east-1"})
    yield lambda_host
    lambda_host.close()


def test_given_two_invocations_then_the_module_loads_once_and_sees_the_functions_environment(host):
    first, errored = host.invoke(_spec(), {"n": 1})
    second, _ = host.invoke(_spec(), {"n": 2})

    assert not errored
    assert first["cold_starts"] == second["cold_starts"] == 1
    assert first["stack"] == "SpotTrainLocal"
    assert 0 < first["remaining_ms"] <= 30_000
    assert "STACK_NAME" not in os.environ


def test_given_new_code_then_the_function_cold_starts_again(host):
    host.invoke(_spec("v1"), {})

    payload, _ = host.invoke(_spec("v2"), {})

    assert payload["cold_starts"] == 1  # a fresh module, not the old one's counter


def test_given_the_handler_raises_then_the_payload_names_the_exception_class(host):
    payload, errored = host.invoke(_spec(), {"fail": True})

    assert errored
    assert payload["errorType"] == "BucketNameTaken"
    assert "rename the job" in payload["errorMessage"]


def test_given_a_handler_prints_then_it_lands_in_the_functions_log_not_the_callers_stdout(host, capsys):
    host.invoke(_spec(), {"n": 7})
    print("emulator line")
    host.close()

    assert "handling 7" in host.log_path.read_text()
    captured = capsys.readouterr().out
    assert "emulator line" in captured
    assert "handling 7" not in captured
    assert type(sys.stdout).__name__ != "_ThreadRoutedStream"  # close() gave the process its stdout back


IMPORTS_THE_CONTRACT = """
from spottrain.contract import layout

def handler(event, context):
    return {"job_key": layout.JOB_KEY, "layout_file": layout.__file__}
"""


def test_given_an_asset_without_a_module_the_repo_has_then_the_import_fails_as_it_would_on_aws(host):
    import spottrain.contract.layout as repos_layout

    spec = task_spec("Stack-Task-2", IMPORTS_THE_CONTRACT)

    payload, errored = host.invoke(spec, {})

    assert errored and payload["errorType"] == "ModuleNotFoundError"
    assert "spottrain.contract" in payload["errorMessage"]
    assert sys.modules["spottrain.contract.layout"] is repos_layout  # the emulator's own contract is untouched


def test_given_an_asset_with_the_contract_then_the_function_imports_its_own_copy(host, tmp_path):
    import spottrain.contract.layout as repos_layout

    own_contract = {"spottrain/contract/__init__.py": "", "spottrain/contract/layout.py": 'JOB_KEY = "job.json"\n'}
    spec = task_spec("Stack-Task-3", IMPORTS_THE_CONTRACT, own_contract)

    payload, errored = host.invoke(spec, {})

    assert not errored, payload
    assert payload["layout_file"].startswith(str(tmp_path))  # from the unpacked asset, not the repository
    assert sys.modules["spottrain.contract.layout"] is repos_layout


WAITS_FOR_RELEASE = """
import pathlib, time

def handler(event, context):
    pathlib.Path(event["started"]).touch()
    while not pathlib.Path(event["release"]).exists():
        time.sleep(0.01)
    return {}
"""


def test_given_a_running_invocation_then_it_counts_only_once_it_has_ended(host, tmp_path):
    import threading

    spec = task_spec("Stack-Task-4", WAITS_FOR_RELEASE)
    started, release = tmp_path / "started", tmp_path / "release"
    invocation = threading.Thread(target=host.invoke, args=(spec, {"started": str(started), "release": str(release)}))
    invocation.start()
    try:
        deadline = time.monotonic() + 30  # bounds a failure only
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)

        # a test waiting for the invocation must not see it before all its AWS calls are made
        assert started.exists() and host.invocations[handler_name("task")] == 0
    finally:
        release.touch()
        invocation.join(timeout=30)
    assert host.invocations[handler_name("task")] == 1
