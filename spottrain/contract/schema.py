"""The job spec's JSON Schema (`job-spec.schema.json`, next to this module), as data.

jobspec.py validates against it (for the Lambdas and the CLI); the agent reads only what it needs
from it (the required fields), without the validator.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Tuple

SCHEMA_PATH = Path(__file__).with_name("job-spec.schema.json")


@functools.lru_cache(maxsize=None)
def load() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def required_fields() -> Tuple[str, ...]:
    """The spec's required top-level fields, as the schema lists them."""
    return tuple(load()["required"])
