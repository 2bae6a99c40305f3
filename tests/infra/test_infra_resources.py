"""The stack's resources and the properties users and the other parts rely on."""

from __future__ import annotations

import json
import re

from aws_cdk.assertions import Match

from spottrain.contract.defaults import STACK_DEFAULTS
from spottrain.contract.layout import TAG_STACK
from spottrain.contract.settings import ENVIRONMENT_VARIABLES, settings_from_env
from spottrain.infra.functions import EVENT_HANDLERS, SWEEP_TASKS, TASKS
from spottrain.infra.stack import DEFAULT_ASL
from spottrain.infra.workflow import substitution_name
from infra_synth import job_machines

from infra_synth import CUSTOM_CONTEXT


def _stack_tag(synth):
    return Match.array_with([{"Key": TAG_STACK, "Value": synth.stack_name}])


# --- notifications -----------------------------------------------------------------------------


def test_given_defaults_then_topic_is_encrypted_tls_only_and_has_no_subscription(default_synth):
    t = default_synth.assertions
    (topic,) = default_synth.resources("AWS::SNS::Topic").values()
    assert json.dumps(topic["Properties"]["KmsMasterKeyId"]).endswith(':alias/aws/sns"]]}')
    t.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )
    t.resource_count_is("AWS::SNS::Subscription", 0)


def test_given_notification_email_then_it_is_subscribed_to_the_topic(custom_synth):
    custom_synth.assertions.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": CUSTOM_CONTEXT["notificationEmail"]}
    )


# --- storage -----------------------------------------------------------------------------------


def test_stack_bucket_is_private_encrypted_and_tls_only(default_synth):
    t = default_synth.assertions
    t.resource_count_is("AWS::S3::Bucket", 1)
    t.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": Match.absent(),
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        },
    )
    t.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_stack_bucket_accepts_access_logs_only_from_this_stacks_job_buckets(custom_synth):
    custom_synth.assertions.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Principal": {"Service": "logging.s3.amazonaws.com"},
                                "Action": "s3:PutObject",
                                "Resource": Match.object_like({"Fn::Join": ["", Match.array_with(["/access-logs/*"])]}),
                                "Condition": Match.object_like(
                                    {
                                        "ArnLike": {
                                            "aws:SourceArn": {
                                                "Fn::Join": [
                                                    "",
                                                    ["arn:", {"Ref": "AWS::Partition"}, ":s3:::acme-train-*"],
                                                ]
                                            }
                                        }
                                    }
                                ),
                            }
                        )
                    ]
                )
            }
        },
    )


# --- instance launch ---------------------------------------------------------------------------


def test_launch_template_requires_imdsv2_encrypts_root_and_terminates_on_shutdown(default_synth):
    default_synth.assertions.has_resource_properties(
        "AWS::EC2::LaunchTemplate",
        {
            "LaunchTemplateData": Match.object_like(
                {
                    "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2},
                    "InstanceInitiatedShutdownBehavior": "terminate",
                    "BlockDeviceMappings": [
                        {
                            "DeviceName": "/dev/sda1",
                            "Ebs": Match.object_like(
                                {"Encrypted": True, "VolumeSize": 100, "DeleteOnTermination": True}
                            ),
                        }
                    ],
                    "IamInstanceProfile": {"Arn": Match.any_value()},
                    "SecurityGroupIds": [Match.any_value()],
                    "TagSpecifications": Match.array_with(
                        [
                            {"ResourceType": "instance", "Tags": _stack_tag(default_synth)},
                            {"ResourceType": "volume", "Tags": _stack_tag(default_synth)},
                        ]
                    ),
                }
            )
        },
    )


def test_launch_template_has_no_key_pair_and_no_fixed_name(any_synth):
    for template in any_synth.resources("AWS::EC2::LaunchTemplate").values():
        assert "KeyName" not in template["Properties"]["LaunchTemplateData"]
        assert "LaunchTemplateName" not in template["Properties"]


def test_given_root_volume_gb_then_root_volume_has_that_size(custom_synth):
    custom_synth.assertions.has_resource_properties(
        "AWS::EC2::LaunchTemplate",
        {
            "LaunchTemplateData": Match.object_like(
                {"BlockDeviceMappings": [Match.object_like({"Ebs": Match.object_like({"VolumeSize": 150})})]}
            )
        },
    )


def test_ami_comes_from_the_configured_ssm_parameter(default_synth, custom_synth):
    default_ami = STACK_DEFAULTS["amiSsmParameter"]
    image_params = [p for p in default_synth.template["Parameters"].values() if "EC2::Image::Id" in p["Type"]]
    assert [p["Default"] for p in image_params] == [default_ami]
    (template,) = default_synth.resources("AWS::EC2::LaunchTemplate").values()
    ref = template["Properties"]["LaunchTemplateData"]["ImageId"]["Ref"]
    assert default_synth.template["Parameters"][ref]["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"


def test_instance_profile_carries_the_instance_role(default_synth):
    t = default_synth.assertions
    t.resource_count_is("AWS::IAM::InstanceProfile", 1)
    (profile,) = default_synth.resources("AWS::IAM::InstanceProfile").values()
    (role_ref,) = profile["Properties"]["Roles"]
    role = default_synth.template["Resources"][role_ref["Ref"]]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "ec2.amazonaws.com"
    }


def test_security_group_has_no_inbound_rules(any_synth):
    any_synth.assertions.resource_count_is("AWS::EC2::SecurityGroupIngress", 0)
    for group in any_synth.resources("AWS::EC2::SecurityGroup").values():
        assert "SecurityGroupIngress" not in group["Properties"]


def test_given_no_vpc_then_security_group_lands_in_the_default_vpc(default_synth):
    (group,) = default_synth.resources("AWS::EC2::SecurityGroup").values()
    assert "VpcId" not in group["Properties"]
    assert "SecurityGroupEgress" not in group["Properties"]  # CloudFormation rejects egress rules without VpcId


def test_given_vpc_id_then_security_group_is_in_that_vpc(custom_synth):
    custom_synth.assertions.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {"VpcId": CUSTOM_CONTEXT["vpcId"], "SecurityGroupEgress": [Match.object_like({"CidrIp": "0.0.0.0/0"})]},
    )


# --- lambdas -----------------------------------------------------------------------------------


def _functions(synth) -> dict[str, dict]:
    """task -> properties, keyed by handler (spottrain.functions.<task>.handler), never by logical id."""
    by_task = {}
    for resource in synth.resources("AWS::Lambda::Function").values():
        task = re.fullmatch(r"spottrain\.functions\.(\w+)\.handler", resource["Properties"]["Handler"]).group(1)
        by_task[task] = resource["Properties"]
    return by_task


def test_nine_functions_with_runtime_memory_timeout_and_own_log_group(default_synth):
    functions = _functions(default_synth)
    assert sorted(functions) == sorted(TASKS)
    log_groups = default_synth.resources("AWS::Logs::LogGroup")
    for props in functions.values():
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == ["x86_64"]
        assert props["MemorySize"] == 256 and 30 <= props["Timeout"] <= 60
        assert props["LoggingConfig"]["LogGroup"]["Ref"] in log_groups
    assert len({p["LoggingConfig"]["LogGroup"]["Ref"] for p in functions.values()}) == len(TASKS)


def test_every_log_group_has_retention(any_synth):
    groups = any_synth.resources("AWS::Logs::LogGroup")
    assert len(groups) == len(TASKS) + 2  # + the job and the sweep state machines'
    assert {g["Properties"]["RetentionInDays"] for g in groups.values()} == {30}


def _jsonschema_layer_ref(synth) -> dict:
    (layer_id,) = synth.resources("AWS::Lambda::LayerVersion")
    return {"Ref": layer_id}


def test_given_defaults_then_functions_use_the_jsonschema_layer_and_the_pinned_powertools_layer(default_synth):
    for props in _functions(default_synth).values():
        ours, layer = props["Layers"]
        assert ours == _jsonschema_layer_ref(default_synth)
        joined = "".join(part if isinstance(part, str) else "<ref>" for part in layer["Fn::Join"][1])
        assert re.fullmatch(
            r"arn:<ref>:lambda:<ref>:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:\d+", joined
        )


def test_given_empty_powertools_layer_arn_then_functions_have_only_the_jsonschema_layer(custom_synth):
    for props in _functions(custom_synth).values():
        assert props["Layers"] == [_jsonschema_layer_ref(custom_synth)]


def test_function_environment_uses_only_the_shared_variable_names_and_sets_all(any_synth):
    for task, props in _functions(any_synth).items():
        names = set(props["Environment"]["Variables"])
        assert names == set(ENVIRONMENT_VARIABLES), f"{task}: {names ^ set(ENVIRONMENT_VARIABLES)}"


def _literal_env(props) -> dict[str, str]:
    # Deploy-time references (ARNs, ids) become placeholders; their presence is checked elsewhere.
    return {k: v if isinstance(v, str) else "resolved-at-deploy" for k, v in props["Environment"]["Variables"].items()}


def test_given_defaults_then_lambda_settings_parse_to_the_documented_defaults(default_synth):
    for props in _functions(default_synth).values():
        settings = settings_from_env(_literal_env(props))
        assert settings.stack_name == default_synth.stack_name
        assert settings.subnet_ids == ()
        assert settings.allowed_instance_types == ("g5.xlarge", "g6.xlarge", "g4dn.xlarge", "g5.2xlarge", "g6.2xlarge")
        assert settings.default_instance_types == ("g5.xlarge", "g6.xlarge", "g4dn.xlarge")
        assert (settings.bid_wait_seconds, settings.bid_max_checks) == (15, 8)
        assert settings.heartbeat_lost_seconds == 300
        assert (settings.max_runtime_minutes, settings.max_attempts) == (1440, 3)
        assert (settings.default_keep_alive_minutes, settings.max_keep_alive_minutes) == (0, 60)
        assert settings.max_spot_price is None and settings.on_demand_fallback is True
        assert settings.seconds_per_minute == 60
        assert props["Environment"]["Variables"]["BUCKET_PREFIX"] == {
            "Fn::Join": ["-", ["spottrain", {"Ref": "AWS::AccountId"}]]
        }


def test_given_custom_context_then_lambda_settings_carry_it(custom_synth):
    for props in _functions(custom_synth).values():
        settings = settings_from_env(_literal_env(props))
        assert settings.bucket_prefix == "acme-train"
        assert settings.subnet_ids == ("subnet-0aaa1111", "subnet-0bbb2222")
        assert settings.max_spot_price == 0.75 and settings.on_demand_fallback is False


def test_function_environment_points_at_the_stacks_resources(default_synth):
    (topic,) = default_synth.resources("AWS::SNS::Topic")
    (template,) = default_synth.resources("AWS::EC2::LaunchTemplate")
    for props in _functions(default_synth).values():
        env = props["Environment"]["Variables"]
        assert env["TOPIC_ARN"] == {"Ref": topic}
        assert env["LAUNCH_TEMPLATE_ID"] == {"Ref": template}
        assert "cdk-hnb659fds-assets" in json.dumps(env["AGENT_BUCKET"]) and env["AGENT_KEY"].endswith(".zip")
        # the bucket whose policy accepts the job buckets' access logs is the one create_bucket logs into
        (records,) = default_synth.resources("AWS::S3::Bucket")
        assert env["RECORDS_BUCKET"] == {"Ref": records}
        # job bucket policies admit this role's sessions on the job's own instances (aws:userid = RoleId:instance)
        (profile,) = default_synth.resources("AWS::IAM::InstanceProfile").values()
        role = profile["Properties"]["Roles"][0]["Ref"]
        assert env["INSTANCE_ROLE_ARN"] == {"Fn::GetAtt": [role, "Arn"]}
        assert env["INSTANCE_ROLE_ID"] == {"Fn::GetAtt": [role, "RoleId"]}


# --- workflow ----------------------------------------------------------------------------------


def _state_machine(synth) -> dict:
    (machine,) = job_machines(synth).values()
    return machine["Properties"]


def test_substitutions_cover_exactly_the_placeholders_of_the_asl_file(default_synth):
    placeholders = set(re.findall(r"\$\{(\w+)\}", DEFAULT_ASL.read_text()))
    substitutions = _state_machine(default_synth)["DefinitionSubstitutions"]
    assert set(substitutions) == placeholders
    assert placeholders == {substitution_name(task) for task in TASKS if task not in EVENT_HANDLERS | SWEEP_TASKS}


def test_each_substitution_is_the_arn_of_its_own_function(default_synth):
    resources = default_synth.template["Resources"]
    for name, value in _state_machine(default_synth)["DefinitionSubstitutions"].items():
        logical_id, attribute = value["Fn::GetAtt"]
        handler = resources[logical_id]["Properties"]["Handler"]
        assert attribute == "Arn" and substitution_name(handler.split(".")[-2]) == name


def test_definition_is_the_asl_file_with_the_configured_timeout(default_synth, custom_synth):
    source = json.loads(DEFAULT_ASL.read_text())
    for synth, hours in ((default_synth, 96), (custom_synth, 30)):
        definition = json.loads(_state_machine(synth)["DefinitionString"])
        assert definition.pop("TimeoutSeconds") == hours * 3600
        source.pop("TimeoutSeconds", None)
        assert definition == source


def test_state_machine_logs_all_events_and_traces(default_synth):
    default_synth.assertions.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineName": Match.absent(),
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": Match.object_like({"Level": "ALL", "Destinations": [Match.any_value()]}),
        },
    )


def _rule(synth, source: str) -> dict:
    (rule,) = [
        r
        for r in synth.resources("AWS::Events::Rule").values()
        if r["Properties"]["EventPattern"]["source"] == [source]
    ]
    return rule


def test_aborted_or_timed_out_executions_invoke_terminate_instance(default_synth):
    rule = _rule(default_synth, "aws.states")
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "TIMED_OUT"]
    (machine_id,) = job_machines(default_synth)
    assert pattern["detail"]["stateMachineArn"] == [{"Ref": machine_id}]
    (target,) = rule["Properties"]["Targets"]
    target_fn = default_synth.template["Resources"][target["Arn"]["Fn::GetAtt"][0]]
    assert target_fn["Properties"]["Handler"] == "spottrain.functions.terminate_instance.handler"
    default_synth.assertions.has_resource_properties(
        "AWS::Lambda::Permission",
        {"Principal": "events.amazonaws.com", "SourceArn": {"Fn::GetAtt": [Match.any_value(), "Arn"]}},
    )


def test_instances_that_stop_or_end_invoke_instance_state_change(default_synth):
    # Given the stack, Then every stop or end of an EC2 instance reaches instance_state_change, which
    # fails the waiting task of the attempt that instance runs (the handler filters by the stack's tag)
    rule = _rule(default_synth, "aws.ec2")
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["detail-type"] == ["EC2 Instance State-change Notification"]
    assert sorted(pattern["detail"]["state"]) == ["shutting-down", "stopped", "stopping", "terminated"]
    (target,) = rule["Properties"]["Targets"]
    target_fn = default_synth.template["Resources"][target["Arn"]["Fn::GetAtt"][0]]
    assert target_fn["Properties"]["Handler"] == "spottrain.functions.instance_state_change.handler"


# --- outputs, tags, names ----------------------------------------------------------------------


def test_outputs_have_stable_logical_ids(default_synth):
    outputs = default_synth.template["Outputs"]
    assert {
        "StateMachineArn",
        "TopicArn",
        "BucketName",
        "JobBucketPrefix",
        "TerminateFunctionName",
        "ValidateJobFunctionName",
    } <= set(outputs)
    (machine_id,) = job_machines(default_synth)
    assert outputs["StateMachineArn"]["Value"] == {"Ref": machine_id}


def test_no_fixed_physical_names_so_two_stacks_deploy_side_by_side(any_synth):
    name_properties = (
        "BucketName",
        "TopicName",
        "FunctionName",
        "RoleName",
        "StateMachineName",
        "LaunchTemplateName",
        "LogGroupName",
        "GroupName",
        "InstanceProfileName",
        "Name",
    )
    for logical_id, resource in any_synth.template["Resources"].items():
        # A reference (e.g. Lambda::Permission's FunctionName) is fine; a literal string is a fixed name.
        fixed = [p for p in name_properties if isinstance(resource.get("Properties", {}).get(p), str)]
        assert not fixed, f"{logical_id} sets {fixed}"


def test_taggable_resources_carry_the_stack_tag(default_synth):
    for resource_type in (
        "AWS::SNS::Topic",
        "AWS::S3::Bucket",
        "AWS::IAM::Role",
        "AWS::Lambda::Function",
        "AWS::StepFunctions::StateMachine",
        "AWS::EC2::SecurityGroup",
        "AWS::Logs::LogGroup",
    ):
        for logical_id, resource in default_synth.resources(resource_type).items():
            assert {"Key": TAG_STACK, "Value": default_synth.stack_name} in resource["Properties"].get("Tags", []), (
                logical_id
            )
