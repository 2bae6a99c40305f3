"""A job using a secret runs end to end, and nothing the run left anywhere holds the secret's value.

Issue 13's proof: the value goes from SSM to the commands' environment and nowhere else. Everything
the run left is searched: every object in the job's bucket (logs, output, markers, report), every
email, the execution's input and history, and every file in the emulator's run folder (the instances'
sandboxes and consoles, the Lambdas' logs).
"""
from __future__ import annotations

import hashlib
import json
import secrets

import pytest

from e2e_support import git_repository
from spottrain.local import Emulator
from spottrain.secret_store import put_secret

# Uses the value (its hash goes to output/) and prints it, which the agent must mask.
TRAIN = ("import hashlib, os, pathlib\n"
         "token = os.environ['DATASET_TOKEN']\n"
         "print('using token', token, flush=True)\n"
         "out = pathlib.Path(os.environ['SPOTTRAIN_OUTPUT_DIR'])\n"
         "out.mkdir(parents=True, exist_ok=True)\n"
         "(out / 'token.sha256').write_text(hashlib.sha256(token.encode()).hexdigest())\n")


def _everything_in_bucket(s3, bucket: str) -> dict[str, bytes]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


@pytest.mark.timeout(300)
def test_given_a_job_with_a_secret_when_it_runs_then_the_command_uses_it_and_nothing_left_holds_it(
    emulator_workdir, tmp_path
):
    # Given a secret in the stack's SSM and a job mapping DATASET_TOKEN to it
    value = "dst-" + secrets.token_urlsafe(24)
    repo = git_repository(tmp_path / "secret-repo", {"train.py": TRAIN})
    spec = {"exec_name": "secret-job", "repository_url": repo.as_uri(), "repository_name": "secret-repo",
            "repository_ref": "main", "data_dir": "data", "output_dir": "result", "data_get_command": "true",
            "exec_command": "python train.py", "secrets": {"DATASET_TOKEN": "/spottrain/e2e/dataset-token"}}
    with Emulator(emulator_workdir) as emulator:
        put_secret(emulator.client("ssm"), "/spottrain/e2e/dataset-token", value)

        # When the job runs to its end
        arn = emulator.start_job(spec)
        final = emulator.wait(arn, timeout=240)
        emails = emulator.wait_for_emails(2, timeout=10)
        s3 = emulator.client("s3")
        bucket = _everything_in_bucket(s3, emulator.stack.job_bucket(spec["exec_name"]))
        history = emulator.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)
        instance_calls = emulator.instance_calls
    run_files = {str(path): path.read_bytes() for path in emulator.run_dir.rglob("*") if path.is_file()}

    # Then the job succeeded with the value in its command's environment
    assert final["status"] == "SUCCEEDED", final.get("cause")
    assert bucket["output/token.sha256"].decode() == hashlib.sha256(value.encode()).hexdigest()
    log = b"".join(body for key, body in bucket.items() if key.startswith("logs/attempt-1/output-"))
    assert b"using token ********" in log
    # And the instance read it with its role, as the deployed policies allow
    reads = [call for call in instance_calls if call.action == "ssm:GetParameter"]
    assert reads and all(call.verdict.allowed for call in reads), [str(c) for c in reads]
    # And the value is nowhere: bucket, emails, execution input and history, the emulator's run folder
    needle = value.encode()
    leaks = [f"s3: {key}" for key, body in bucket.items() if needle in body]
    leaks += ["emails" for text in [json.dumps(emails, default=str)] if value in text]
    leaks += ["execution history" for text in [json.dumps(history, default=str)] if value in text]
    leaks += [f"file: {path}" for path, body in run_files.items() if needle in body]
    assert leaks == []
    assert len(run_files) > 10 and any("console.log" in path for path in run_files)  # the search was not vacuous
