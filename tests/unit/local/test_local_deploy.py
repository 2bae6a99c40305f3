"""Deploying a cdk.out as `cdk deploy` would: assets to their buckets, the template to CloudFormation."""

from __future__ import annotations

import io
import json
import zipfile

from spottrain.local import deploy


def _cdk_out(tmp_path):
    """A minimal assembly: one directory asset (zip packaging), one file asset, and the template."""
    out = tmp_path / "cdk.out"
    (out / "asset.abc" / "functions").mkdir(parents=True)
    (out / "asset.abc" / "functions" / "task.py").write_text("def handler(e, c): return e\n")
    (out / "asset.def.json").write_text('{"StartAt": "A"}')
    template = {
        "Resources": {
            "Topic": {"Type": "AWS::SNS::Topic"},
            "Policy": {"Type": "AWS::SNS::TopicPolicy", "Properties": {}},
        }
    }
    (out / "Toy.template.json").write_text(json.dumps(template))
    bucket = "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"
    manifest = {
        "version": "36.0.0",
        "files": {
            "abc": {
                "source": {"path": "asset.abc", "packaging": "zip"},
                "destinations": {"d": {"bucketName": bucket, "objectKey": "abc.zip"}},
            },
            "def": {
                "source": {"path": "asset.def.json", "packaging": "file"},
                "destinations": {"d": {"bucketName": bucket, "objectKey": "def.json"}},
            },
            "tpl": {
                "source": {"path": "Toy.template.json", "packaging": "file"},
                "destinations": {"d": {"bucketName": bucket, "objectKey": "tpl.json"}},
            },
        },
        "dockerImages": {},
    }
    (out / "Toy.assets.json").write_text(json.dumps(manifest))
    return out


def test_given_an_assembly_when_assets_are_uploaded_then_each_lands_where_the_template_expects(aws, tmp_path):
    s3 = aws("s3")

    template = deploy.upload_assets(s3, _cdk_out(tmp_path), "Toy", "123456789012", "us-east-1", tmp_path)

    bucket = "cdk-hnb659fds-assets-123456789012-us-east-1"
    zipped = zipfile.ZipFile(io.BytesIO(s3.get_object(Bucket=bucket, Key="abc.zip")["Body"].read()))
    assert zipped.namelist() == ["functions/task.py"]
    assert s3.get_object(Bucket=bucket, Key="def.json")["Body"].read() == b'{"StartAt": "A"}'
    assert "AWS::SNS::Topic" in template


def test_given_a_template_then_resource_types_moto_skips_are_named(tmp_path):
    template = json.loads((_cdk_out(tmp_path) / "Toy.template.json").read_text())

    assert deploy.unsupported_resource_types(template) == ["AWS::SNS::TopicPolicy"]


def test_given_the_same_inputs_then_the_synth_cache_key_is_stable_and_context_changes_it():
    context = {"bidWaitSeconds": 1}

    assert deploy.synth_cache_key(context, "SpotTrainLocal") == deploy.synth_cache_key(dict(context), "SpotTrainLocal")
    assert deploy.synth_cache_key(context, "SpotTrainLocal") != deploy.synth_cache_key(
        {"bidWaitSeconds": 2}, "SpotTrainLocal"
    )
    assert deploy.synth_cache_key(context, "SpotTrainLocal") != deploy.synth_cache_key(context, "Other")
