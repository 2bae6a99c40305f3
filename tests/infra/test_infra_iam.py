"""Least privilege: each role gets exactly its calls, scoped to this stack's resources."""

from __future__ import annotations

import json
import re

from spottrain.contract.layout import TAG_STACK
from spottrain.infra.functions import TASKS
from spottrain.infra.debug_door import AGENT_MESSAGE_ACTIONS, REGISTER_ACTIONS, SESSION_ACTIONS
from infra_synth import job_machines

# A task token is the capability: SendTask* take no resource.
CALLBACK_ACTIONS = {"states:SendTaskHeartbeat", "states:SendTaskSuccess", "states:SendTaskFailure"}
# IAM service authorization reference: these actions support no resource-level permissions.
NO_RESOURCE_LEVEL = {
    "ec2:DescribeInstances",
    "ec2:DescribeSpotInstanceRequests",
    "ec2:DescribeSubnets",
    "ec2:DescribeSpotPriceHistory",
    "ec2:GetSpotPlacementScores",
    "pricing:GetProducts",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    *CALLBACK_ACTIONS,
    *SESSION_ACTIONS,
    *AGENT_MESSAGE_ACTIONS,
}
# A job's secrets role (spottrain/functions/shared/secrets_role.py): made by CreateBucket, gone at the job's end
JOB_ROLE_CREATION = {"iam:CreateRole", "iam:TagRole", "iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy", "iam:GetRole"}
JOB_ROLE_DELETION = {"iam:ListRolePolicies", "iam:DeleteRolePolicy", "iam:DeleteRole"}
MUTATING_EC2 = {"ec2:TerminateInstances", "ec2:CancelSpotInstanceRequests"}
INSTANCE_READS = {"ec2:GetConsoleOutput"}  # resource-level: only this stack's instances

# What each task's role may do (docs: infra/permissions.py).
EXPECTED_TASK_ACTIONS = {
    "validate_job": {"states:ListExecutions", "states:DescribeExecution"},
    "create_bucket": {
        "s3:CreateBucket",
        "s3:PutBucketPublicAccessBlock",
        "s3:PutEncryptionConfiguration",
        "s3:PutBucketPolicy",
        "s3:GetBucketPolicy",
        "s3:GetBucketTagging",
        "s3:PutBucketTagging",
        "s3:PutBucketOwnershipControls",
        "s3:PutBucketLogging",
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "s3:PutObject",
        "s3:DeleteObject",
        *JOB_ROLE_CREATION,
        *JOB_ROLE_DELETION,
    },  # the run's secrets role, deleted again when job.json cannot be written
    "request_spot_instance": {
        "ec2:RunInstances",
        "ec2:CreateTags",
        "ec2:DescribeSubnets",
        "ec2:DescribeSpotPriceHistory",
        "ec2:GetSpotPlacementScores",
        "pricing:GetProducts",
        "iam:PassRole",
        "iam:CreateServiceLinkedRole",
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "s3:GetBucketPolicy",
        "s3:PutBucketPolicy",
        "iam:UpdateAssumeRolePolicy",
    },  # admits each attempt's instance to its job bucket and its secrets role
    "check_bid": {
        "ec2:DescribeInstances",
        "ec2:DescribeSpotInstanceRequests",
        *MUTATING_EC2,
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
    },
    "poll_completion": {
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "ec2:DescribeInstances",
        "ec2:TerminateInstances",
        "ec2:GetConsoleOutput",
        "ec2:DescribeSpotPriceHistory",
    },
    "await_training": {
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "ec2:DescribeInstances",
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
    },
    "instance_state_change": {"s3:GetObject", "s3:ListBucket", "ec2:DescribeInstances", "states:SendTaskFailure"},
    "notify": {"sns:Publish", "s3:GetObject", "s3:ListBucket"},
    "terminate_instance": {
        "ec2:DescribeInstances",
        "ec2:DescribeSpotInstanceRequests",
        *MUTATING_EC2,
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "sns:Publish",
        *JOB_ROLE_DELETION,
    },
}
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _statements(synth):
    """(policy logical id, attached role ids, statement) for every identity policy in the template."""
    for logical_id, policy in synth.resources("AWS::IAM::Policy").items():
        roles = [ref["Ref"] for ref in policy["Properties"].get("Roles", [])]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            yield logical_id, roles, statement


def _role_of_task(synth, task):
    (fn,) = [
        f
        for f in synth.resources("AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == f"spottrain.functions.{task}.handler"
    ]
    return fn["Properties"]["Role"]["Fn::GetAtt"][0]


def _actions_of_role(synth, role_id):
    actions = set()
    for _, roles, statement in _statements(synth):
        if role_id in roles:
            actions.update(_as_list(statement["Action"]))
    return actions


def test_no_statement_uses_a_wildcard_action(any_synth):
    for logical_id, _, statement in _statements(any_synth):
        assert not [a for a in _as_list(statement["Action"]) if "*" in a], (logical_id, statement)


def test_resource_star_only_for_actions_without_resource_level_permissions(any_synth):
    for logical_id, _, statement in _statements(any_synth):
        if "*" in _as_list(statement["Resource"]):
            assert set(_as_list(statement["Action"])) <= NO_RESOURCE_LEVEL, (logical_id, statement)


def test_each_task_role_has_exactly_its_actions(any_synth):
    for task, expected in EXPECTED_TASK_ACTIONS.items():
        actions = _actions_of_role(any_synth, _role_of_task(any_synth, task))
        assert actions == expected | LOG_ACTIONS, (
            f"{task}: extra {actions - expected - LOG_ACTIONS}, missing {expected - actions}"
        )


def test_each_function_writes_only_to_its_own_log_group(default_synth):
    for task in EXPECTED_TASK_ACTIONS:
        role_id = _role_of_task(default_synth, task)
        (fn,) = [
            f
            for f in default_synth.resources("AWS::Lambda::Function").values()
            if f["Properties"]["Role"]["Fn::GetAtt"][0] == role_id
        ]
        log_group = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        log_statements = [
            s
            for _, roles, s in _statements(default_synth)
            if role_id in roles and set(_as_list(s["Action"])) & LOG_ACTIONS
        ]
        assert [s["Resource"] for s in log_statements] == [{"Fn::GetAtt": [log_group, "Arn"]}]


def test_terminate_and_cancel_only_on_resources_tagged_with_this_stack(any_synth):
    seen = 0
    for logical_id, _, statement in _statements(any_synth):
        if set(_as_list(statement["Action"])) & MUTATING_EC2:
            seen += 1
            assert set(_as_list(statement["Action"])) <= MUTATING_EC2
            assert statement["Condition"] == {"StringEquals": {f"ec2:ResourceTag/{TAG_STACK}": any_synth.stack_name}}
    assert seen == 5  # check_bid 2, poll_completion 1, terminate_instance 2


def test_console_output_only_of_instances_tagged_with_this_stack(any_synth):
    # Given the statements that read an instance's console, Then each is limited to this stack's instances
    reads = [s for _, _, s in _statements(any_synth) if set(_as_list(s["Action"])) & INSTANCE_READS]
    assert len(reads) == 1
    for statement in reads:
        assert set(_as_list(statement["Action"])) == INSTANCE_READS
        assert json.dumps(statement["Resource"]).endswith(':instance/*"]]}')
        assert statement["Condition"] == {"StringEquals": {f"ec2:ResourceTag/{TAG_STACK}": any_synth.stack_name}}


def test_validate_job_reads_only_its_own_state_machines_executions(any_synth):
    # Given validate_job's statements, Then it lists this stack's state machine and describes only its executions
    (machine_id,) = job_machines(any_synth)
    role_id = _role_of_task(any_synth, "validate_job")
    states = {
        s.get("Sid"): s
        for _, roles, s in _statements(any_synth)
        if role_id in roles and any(a.startswith("states:") for a in _as_list(s["Action"]))
    }
    assert states["ListOwnExecutions"]["Resource"] == {"Ref": machine_id}
    described = json.dumps(states["DescribeOwnExecutions"]["Resource"])
    assert ":execution:" in described and f'"{machine_id}", "Name"' in described and described.endswith(':*"]]}')


def test_run_instances_creates_only_resources_tagged_with_this_stack(default_synth):
    run = [s for _, _, s in _statements(default_synth) if "ec2:RunInstances" in _as_list(s["Action"])]
    tagged = [s for s in run if "Condition" in s]
    (statement,) = tagged
    assert statement["Condition"] == {"StringEquals": {f"aws:RequestTag/{TAG_STACK}": default_synth.stack_name}}
    kinds = {json.dumps(r).rsplit(":", 1)[-1].strip('"]}') for r in statement["Resource"]}
    assert kinds == {"instance/*", "volume/*", "spot-instances-request/*"}
    (untagged,) = [s for s in run if "Condition" not in s]
    text = json.dumps(untagged["Resource"])
    assert "launch-template/" in text and "security-group/" in text and "image/" in text
    assert not re.search(r"(launch-template|security-group|image)/\*", text)  # exact ids, not wildcards


def test_given_subnet_ids_then_run_instances_is_limited_to_those_subnets(custom_synth):
    text = json.dumps(
        [s["Resource"] for _, _, s in _statements(custom_synth) if "ec2:RunInstances" in _as_list(s["Action"])]
    )
    assert "subnet/subnet-0aaa1111" in text and "subnet/subnet-0bbb2222" in text and "subnet/*" not in text


def test_create_tags_only_while_running_instances(default_synth):
    (statement,) = [s for _, _, s in _statements(default_synth) if "ec2:CreateTags" in _as_list(s["Action"])]
    assert statement["Condition"] == {"StringEquals": {"ec2:CreateAction": "RunInstances"}}


def test_pass_role_only_on_the_instance_role(default_synth):
    (profile,) = default_synth.resources("AWS::IAM::InstanceProfile").values()
    (instance_role,) = profile["Properties"]["Roles"]
    passes = [s for _, _, s in _statements(default_synth) if "iam:PassRole" in _as_list(s["Action"])]
    assert [s["Resource"] for s in passes] == [{"Fn::GetAtt": [instance_role["Ref"], "Arn"]}]


def test_s3_access_only_within_the_job_bucket_prefix_or_the_agent_asset(custom_synth):
    for logical_id, _, statement in _statements(custom_synth):
        if not any(a.startswith("s3:") for a in _as_list(statement["Action"])):
            continue
        for resource in _as_list(statement["Resource"]):
            text = json.dumps(resource)
            if statement.get("Sid") in ("ListDataBuckets", "ReadDataBuckets"):  # dataBuckets, read-only
                assert set(_as_list(statement["Action"])) <= {"s3:ListBucket", "s3:GetObject"}
                assert ":s3:::acme-datasets" in text, statement
                continue
            assert ":s3:::acme-train-*" in text or "cdk-hnb659fds-assets" in text, (logical_id, statement)


def test_given_data_buckets_then_the_instance_role_may_list_and_read_them_and_nothing_more(default_synth, custom_synth):
    # Given a stack deployed with -c dataBuckets=acme-datasets (the custom one) and one without (the default)
    (profile,) = custom_synth.resources("AWS::IAM::InstanceProfile").values()
    role_id = profile["Properties"]["Roles"][0]["Ref"]
    data = {
        s["Sid"]: s
        for _, roles, s in _statements(custom_synth)
        if role_id in roles and "DataBuckets" in s.get("Sid", "")
    }

    # Then its instances may list that bucket and read its objects, and write nothing there
    assert _as_list(data["ListDataBuckets"]["Action"]) == ["s3:ListBucket"]
    assert json.dumps(data["ListDataBuckets"]["Resource"]).endswith(':s3:::acme-datasets"]]}')
    assert _as_list(data["ReadDataBuckets"]["Action"]) == ["s3:GetObject"]
    assert json.dumps(data["ReadDataBuckets"]["Resource"]).endswith(':s3:::acme-datasets/*"]]}')
    # And without dataBuckets no statement names another bucket
    assert not [s for _, _, s in _statements(default_synth) if "DataBuckets" in s.get("Sid", "")]


def test_instance_role_reads_and_writes_job_buckets_reads_only_the_agent_zip_and_answers_task_tokens(default_synth):
    (profile,) = default_synth.resources("AWS::IAM::InstanceProfile").values()
    role_id = profile["Properties"]["Roles"][0]["Ref"]
    assert _actions_of_role(default_synth, role_id) == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        *CALLBACK_ACTIONS,
        "sts:AssumeRole",
        *REGISTER_ACTIONS,
        *SESSION_ACTIONS,
        *AGENT_MESSAGE_ACTIONS,
    }  # the debug door: the default stack allows one
    # Then it reads no secret itself: it may only ask to assume this stack's job secrets roles
    (assume,) = [
        s for _, roles, s in _statements(default_synth) if role_id in roles and "sts:AssumeRole" in s["Action"]
    ]
    assert _as_list(assume["Action"]) == ["sts:AssumeRole"]
    assert json.dumps(assume["Resource"]).endswith(':role/spottrain/jobs/", {"Ref": "AWS::StackName"}, "/*"]]}')
    # Then the token answers come with nothing else: no states:* action that could start or stop executions
    (answers,) = [
        s for _, roles, s in _statements(default_synth) if role_id in roles and s.get("Sid") == "AnswerTrainingWait"
    ]
    assert set(_as_list(answers["Action"])) == CALLBACK_ACTIONS
    agent = [s for _, roles, s in _statements(default_synth) if role_id in roles and s.get("Sid") == "AgentAsset"]
    (statement,) = agent
    assert json.dumps(statement["Resource"]).endswith('.zip"]]}')


def _instance_role_actions(synth) -> set[str]:
    (profile,) = synth.resources("AWS::IAM::InstanceProfile").values()
    return _actions_of_role(synth, profile["Properties"]["Roles"][0]["Ref"])


def test_given_the_debug_door_then_the_instance_role_gets_only_session_managers_calls(default_synth, custom_synth):
    door = {*REGISTER_ACTIONS, *SESSION_ACTIONS, *AGENT_MESSAGE_ACTIONS}
    # Given the default stack (maxFailureKeepAliveMinutes=30): SSM Agent may register and open sessions, no more
    ssm = {a for a in _instance_role_actions(default_synth) if a.split(":")[0] in ("ssm", "ssmmessages", "ec2messages")}
    assert ssm == door  # no ssm:GetParameter: the job's secrets role reads the job's secrets
    (register,) = [s for _, _, s in _statements(default_synth) if s.get("Sid") == "DebugDoorRegister"]
    assert json.dumps(register["Resource"]).endswith(':instance/*"]]}')
    # Given a stack with maxFailureKeepAliveMinutes=0: no door, none of these permissions
    assert not door & _instance_role_actions(custom_synth)


def test_state_machine_invokes_only_its_functions_and_starts_no_execution(any_synth):
    ((machine_id, machine),) = job_machines(any_synth).items()
    role_id = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    functions = {
        fid
        for fid, f in any_synth.resources("AWS::Lambda::Function").items()  # EventBridge's and the sweep's, not ours
        if f["Properties"]["Handler"]
        not in ("spottrain.functions.instance_state_change.handler", "spottrain.functions.summarize_sweep.handler")
    }
    invoked, started = [], []
    for _, roles, statement in _statements(any_synth):
        if role_id not in roles:
            continue
        actions = set(_as_list(statement["Action"]))
        if "lambda:InvokeFunction" in actions:
            assert actions == {"lambda:InvokeFunction"}
            invoked += [r["Fn::GetAtt"][0] for r in _as_list(statement["Resource"])]
        if "states:StartExecution" in actions:
            started += _as_list(statement["Resource"])
        assert actions <= {"lambda:InvokeFunction", "states:StartExecution"} | NO_RESOURCE_LEVEL
    assert sorted(invoked) == sorted(functions)
    assert started == []  # one execution per job: no hand-over to a fresh one


def test_role_trust_is_limited_to_its_service(default_synth):
    principals = sorted(
        r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
        for r in default_synth.resources("AWS::IAM::Role").values()
    )
    assert principals == ["ec2.amazonaws.com"] + ["lambda.amazonaws.com"] * len(TASKS) + ["states.amazonaws.com"] * 2


def _boundary(synth) -> tuple[str, dict]:
    ((logical_id, policy),) = synth.resources("AWS::IAM::ManagedPolicy").items()
    return logical_id, policy["Properties"]["PolicyDocument"]


def test_given_the_stack_then_job_secrets_roles_are_bounded_to_reading_secrets_under_the_prefix(default_synth):
    # Given the one managed policy the stack deploys: the boundary of every job's secrets role
    boundary_id, document = _boundary(default_synth)
    # Then it allows reading SSM parameters and Secrets Manager secrets under /spottrain/, nothing else
    allowed = {_as_list(s["Action"])[0]: json.dumps(s["Resource"]) for s in document["Statement"]}
    assert set(allowed) == {"ssm:GetParameter", "secretsmanager:GetSecretValue"}
    assert allowed["ssm:GetParameter"].endswith(':parameter/spottrain/*"]]}')
    assert allowed["secretsmanager:GetSecretValue"].endswith(':secret:/spottrain/*"]]}')
    assert all(s["Effect"] == "Allow" and len(_as_list(s["Action"])) == 1 for s in document["Statement"])


def test_given_create_bucket_then_it_creates_roles_only_with_the_boundary_and_only_under_the_stacks_path(default_synth):
    # Given CreateBucket's role
    boundary_id, _ = _boundary(default_synth)
    role_id = _role_of_task(default_synth, "create_bucket")
    iam_statements = [
        s for _, roles, s in _statements(default_synth) if role_id in roles and "iam:" in json.dumps(s["Action"])
    ]
    # Then CreateRole requires the stack's boundary
    (create,) = [s for s in iam_statements if "iam:CreateRole" in _as_list(s["Action"])]
    assert create["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": {"Ref": boundary_id}}}
    # And every IAM action it has reaches only roles under /spottrain/jobs/<stack>/, none changes a boundary
    for statement in iam_statements:
        assert json.dumps(statement["Resource"]).endswith(':role/spottrain/jobs/", {"Ref": "AWS::StackName"}, "/*"]]}')
    granted = {a for s in iam_statements for a in _as_list(s["Action"])}
    assert not granted & {"iam:PutRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary", "iam:AttachRolePolicy"}


def test_given_the_lambda_environment_then_it_names_the_boundary(default_synth):
    boundary_id, _ = _boundary(default_synth)
    tasks = [
        fn["Properties"]["Environment"]["Variables"]
        for fn in default_synth.resources("AWS::Lambda::Function").values()
        if fn["Properties"]["Handler"].startswith("spottrain.functions.")
    ]
    assert len(tasks) >= 3 and all(variables["SECRETS_BOUNDARY_ARN"] == {"Ref": boundary_id} for variables in tasks)
