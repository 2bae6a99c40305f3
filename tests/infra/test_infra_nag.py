"""cdk-nag AwsSolutions and CDK's CloudFormation validation pass, with every suppression explained."""

from __future__ import annotations

import json


def _nag_findings(synth, level):
    return [m for m in synth.messages if m["level"].endswith(level) and "AwsSolutions-" in str(m["data"])]


def test_given_synthesis_then_no_unsuppressed_aws_solutions_errors(any_synth):
    errors = _nag_findings(any_synth, "ERROR")
    assert not errors, "\n".join(f"{m['id']}: {str(m['data'])[:160]}" for m in errors)


def test_given_synthesis_then_no_aws_solutions_warnings(any_synth):
    warnings = _nag_findings(any_synth, "WARN")
    assert not warnings, "\n".join(f"{m['id']}: {str(m['data'])[:160]}" for m in warnings)


def test_every_suppression_has_a_reason_and_iam5_names_what_it_accepts(any_synth):
    suppressions = []
    for resource in any_synth.template["Resources"].values():
        suppressions += resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    assert suppressions
    for suppression in suppressions:
        assert len(suppression["reason"]) >= 40, suppression
        if suppression["id"] == "AwsSolutions-IAM5":
            assert suppression.get("applies_to"), suppression


def test_cloudformation_validation_reports_no_violations(any_synth):
    report = json.loads((any_synth.outdir / "validation-report.json").read_text())
    violations = [v for plugin in report["pluginReports"] for v in plugin.get("violations", [])]
    assert not violations, json.dumps(violations, indent=1)[:2000]
