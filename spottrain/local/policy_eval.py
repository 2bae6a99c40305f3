"""IAM's decision for one request, from identity and resource policies with their conditions.

The logic AWS documents for a principal and a resource of the same account
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html): an
explicit Deny in any policy wins; otherwise an Allow in the identity policies or in the resource
policy allows; otherwise the request is implicitly denied. Statements may use Action/NotAction,
Resource/NotResource, Principal (resource policies) and the condition operators below
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html).
An operator outside that list raises UnsupportedCondition rather than guessing: a check that silently
ignored a condition would pass what AWS denies, or the reverse.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any, Callable, Iterable, Mapping


class UnsupportedCondition(ValueError):
    """A policy uses a condition operator this evaluator does not implement."""


class Decision(enum.Enum):
    ALLOWED = "allowed"
    EXPLICIT_DENY = "explicitly denied"
    IMPLICIT_DENY = "implicitly denied"


@dataclasses.dataclass(frozen=True)
class Request:
    """One action on one resource by one principal; `context` holds the condition keys AWS would set."""

    action: str  # "s3:GetObject"
    resource: str  # an ARN, or "*" for actions without resource level
    principal_arn: str  # the role's ARN for a role session (aws:PrincipalArn)
    context: Mapping[str, str]  # condition key (any case) -> value


@dataclasses.dataclass(frozen=True)
class Verdict:
    decision: Decision
    statement: str  # the Sid (or index) that decided; "" for an implicit deny

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOWED


def evaluate(
    request: Request,
    identity_policies: Iterable[Mapping[str, Any]],
    resource_policies: Iterable[Mapping[str, Any]] = (),
) -> Verdict:
    """Deny wins; then any Allow (identity, or a resource policy naming this principal); else implicit deny."""
    matching: list[tuple[str, str]] = []
    for policy, is_resource_policy in [(p, False) for p in identity_policies] + [(p, True) for p in resource_policies]:
        for index, statement in enumerate(_as_list(policy.get("Statement", []))):
            if _applies(statement, request, is_resource_policy):
                matching.append((statement["Effect"], statement.get("Sid") or f"statement {index}"))
    for effect, sid in matching:
        if effect == "Deny":
            return Verdict(Decision.EXPLICIT_DENY, sid)
    for effect, sid in matching:
        if effect == "Allow":
            return Verdict(Decision.ALLOWED, sid)
    return Verdict(Decision.IMPLICIT_DENY, "")


def _applies(statement: Mapping[str, Any], request: Request, is_resource_policy: bool) -> bool:
    if is_resource_policy and not _principal_matches(statement.get("Principal"), request.principal_arn):
        return False
    # A role's trust policy has no Resource: the role it is attached to is the resource
    # (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html).
    trust_policy = is_resource_policy and "Resource" not in statement and "NotResource" not in statement
    return (
        _matches_element(statement, "Action", request.action, case_sensitive=False)
        and (trust_policy or _matches_element(statement, "Resource", request.resource, case_sensitive=True))
        and conditions_hold(statement.get("Condition") or {}, request.context)
    )


def _matches_element(statement: Mapping[str, Any], element: str, value: str, *, case_sensitive: bool) -> bool:
    if element in statement:
        return any(glob_match(pattern, value, case_sensitive) for pattern in _as_list(statement[element]))
    negated = statement.get(f"Not{element}")
    if negated is None:
        return False
    return not any(glob_match(pattern, value, case_sensitive) for pattern in _as_list(negated))


def _principal_matches(principal: Any, principal_arn: str) -> bool:
    # An account principal (":root") delegates to the account's identity policies: it allows nothing by itself.
    if principal == "*":
        return True
    if isinstance(principal, Mapping):
        return any(arn == "*" or arn == principal_arn for arn in _as_list(principal.get("AWS", [])))
    return False


def glob_match(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    """IAM's wildcards: * is any run of characters (":" and "/" included), ? is one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


def _string_equals(expected: str, actual: str) -> bool:
    return expected == actual


def _string_equals_ignore_case(expected: str, actual: str) -> bool:
    return expected.lower() == actual.lower()


def _bool(expected: str, actual: str) -> bool:
    return str(expected).lower() == str(actual).lower()


def _like(expected: str, actual: str) -> bool:
    return glob_match(expected, actual)


# operator -> (value test, negated); the Arn* operators compare whole ARNs, with wildcards for *Like and
# (as IAM documents) for ArnEquals too.
OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringEqualsIgnoreCase": (_string_equals_ignore_case, False),
    "StringNotEqualsIgnoreCase": (_string_equals_ignore_case, True),
    "StringLike": (_like, False),
    "StringNotLike": (_like, True),
    "ArnEquals": (_like, False),
    "ArnLike": (_like, False),
    "ArnNotEquals": (_like, True),
    "ArnNotLike": (_like, True),
    "Bool": (_bool, False),
}


def conditions_hold(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    """Every operator, every key in it must hold; a key's listed values are alternatives (any one)."""
    lowered = {key.lower(): value for key, value in context.items()}
    return all(_operator_holds(operator, keys, lowered) for operator, keys in condition.items())


def _operator_holds(operator: str, keys: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    if_exists = operator.endswith("IfExists")
    base = operator[: -len("IfExists")] if if_exists else operator
    if base not in OPERATORS:
        raise UnsupportedCondition(
            f"condition operator {operator!r} is not evaluated by spottrain/local/policy_eval.py; "
            f"implement it there (supported: {', '.join(OPERATORS)})"
        )
    test, negated = OPERATORS[base]
    for key, expected in keys.items():
        actual = context.get(key.lower())
        if actual is None:
            # An absent key matches no value: a negated operator holds, a positive one only with IfExists.
            if not (negated or if_exists):
                return False
            continue
        matched = any(test(str(value), actual) for value in _as_list(expected))
        if matched == negated:
            return False
    return True


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]
