"""The emulator's IAM evaluation: Deny wins, conditions hold as IAM documents them, unknown operators refuse."""

from __future__ import annotations

import pytest

from spottrain.local.policy_eval import Decision, Request, UnsupportedCondition, conditions_hold, evaluate, glob_match

ROLE = "arn:aws:iam::123456789012:role/r"


def request(action: str = "s3:GetObject", resource: str = "arn:aws:s3:::b/k", **context: str) -> Request:
    return Request(action, resource, ROLE, context)


def test_given_an_allow_and_a_matching_deny_when_evaluated_then_the_deny_wins():
    allow = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    deny = {
        "Statement": [
            {"Sid": "No", "Effect": "Deny", "Principal": "*", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*"}
        ]
    }

    assert evaluate(request(), [allow], [deny]).statement == "No"
    assert evaluate(request(), [allow], []).decision is Decision.ALLOWED
    assert evaluate(request(), [], []).decision is Decision.IMPLICIT_DENY


def test_given_a_resource_policy_when_its_principal_is_another_role_then_it_does_not_apply():
    deny = {
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": {"AWS": "arn:aws:iam::123456789012:role/other"},
                "Action": "s3:*",
                "Resource": "*",
            }
        ]
    }
    allow = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}

    assert evaluate(request(), [allow], [deny]).decision is Decision.ALLOWED


def test_given_not_action_and_not_resource_then_they_match_everything_else():
    deny = {"Statement": [{"Effect": "Deny", "NotAction": "s3:GetObject", "NotResource": "arn:aws:s3:::b/logs/*"}]}

    assert evaluate(request("s3:PutObject", "arn:aws:s3:::b/job.json"), [deny]).decision is Decision.EXPLICIT_DENY
    assert evaluate(request("s3:GetObject", "arn:aws:s3:::b/job.json"), [deny]).decision is Decision.IMPLICIT_DENY
    assert evaluate(request("s3:PutObject", "arn:aws:s3:::b/logs/x"), [deny]).decision is Decision.IMPLICIT_DENY


@pytest.mark.parametrize(
    "condition,context,holds",
    [
        ({"StringNotLike": {"aws:userid": ["AROA1:i-1", "AROA1:i-2"]}}, {"aws:userid": "AROA1:i-2"}, False),
        ({"StringNotLike": {"aws:userid": ["AROA1:i-1", "AROA1:i-2"]}}, {"aws:userid": "AROA1:i-3"}, True),
        ({"StringLike": {"aws:userid": "*:i-?"}}, {"aws:userid": "AROA1:i-3"}, True),
        ({"ArnEquals": {"aws:PrincipalArn": ROLE}}, {"AWS:PrincipalARN": ROLE}, True),  # keys are case-insensitive
        ({"ArnEquals": {"aws:PrincipalArn": ROLE}}, {}, False),  # an absent key matches no value
        ({"StringNotEquals": {"aws:userid": "x"}}, {}, True),  # ... so a negated operator holds
        ({"StringEqualsIfExists": {"aws:userid": "x"}}, {}, True),
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "true"}, False),
        (
            {"ArnEquals": {"aws:PrincipalArn": ROLE}, "StringLike": {"aws:userid": "*:i-1"}},
            {"aws:PrincipalArn": ROLE, "aws:userid": "AROA1:i-2"},
            False,
        ),  # operators AND together
    ],
)
def test_given_a_condition_when_evaluated_then_it_holds_as_iam_documents(condition, context, holds):
    assert conditions_hold(condition, context) is holds


def test_given_an_operator_it_does_not_implement_then_it_refuses_instead_of_guessing():
    with pytest.raises(UnsupportedCondition, match="NumericLessThan"):
        conditions_hold({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "5"})


def test_given_iam_wildcards_then_star_crosses_slashes_and_brackets_are_literal():
    assert glob_match("arn:aws:s3:::b/*", "arn:aws:s3:::b/status/attempt-1/task-token.json")
    assert not glob_match("arn:aws:s3:::b/[ab]", "arn:aws:s3:::b/a")
