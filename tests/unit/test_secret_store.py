"""`spottrain secret put` and `--local-secret`: names and values refused before anything is stored."""

from __future__ import annotations

import pytest

from spottrain.secret_store import SecretUsageError, check_name, parse_local_secrets


def test_given_a_local_secret_with_an_empty_value_then_the_error_says_the_value_is_empty():
    # e.g. --local-secret /spottrain/x="$UNSET_VARIABLE"
    with pytest.raises(SecretUsageError, match=r"--local-secret /spottrain/x=: the value is empty"):
        parse_local_secrets(["/spottrain/x="])


@pytest.mark.parametrize(
    "name,says",
    [
        ("/spottrain/../x", "'..'"),
        ("/spottrain/a//b", "'//'"),
        ("/spottrain/a/", "ends with '/'"),
        ("/prod/x", "must be under /spottrain/"),
    ],
)
def test_given_a_bad_secret_name_when_stored_then_refused_naming_the_rule(name, says):
    with pytest.raises(SecretUsageError, match=says):
        check_name(name)
