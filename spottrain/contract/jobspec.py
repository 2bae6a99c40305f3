"""Job spec v1: validation against `job-spec.schema.json` (next to this module), stack rules, and defaults.

`jsonschema` validates (the Lambdas get it from the stack's JsonSchema layer, infra/layers.py; the agent
never imports this module). Every problem reads `<field path>: <rule>. <fix>`; the fix comes from the
failing property's `x-hint`.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import posixpath
import re
from typing import Any, Iterator

import jsonschema
from jsonschema import ValidationError

from spottrain.contract import names, repository_auth, schema, ssh, sweep
from spottrain.contract.secrets import SECRET_NAME, SECRETS_PREFIX, name_form_problem, name_path_problem
from spottrain.contract.settings import Settings

SCHEMA_PATH = schema.SCHEMA_PATH

MAX_SPEC_BYTES = 16 * 1024
S3_BUCKET_NAME_MAX = 63
SWEEP_INPUT_MAX_BYTES = 256 * 1024  # Step Functions' limit on an execution's input
INLINE_MAP_MAX = 40  # job-spec.schema.json's sweep.max_parallel maximum (an inline Map's concurrency limit)
EXEC_NAME_MAX = 40  # job-spec.schema.json's exec_name maxLength: every variant's exec_name obeys it too
# S3 reserves these endings for access points and directory buckets.
RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", "--x-s3", ".mrap")
SECRET_NAME_PARTS = ("SECRET", "PASSWORD", "PASSWD", "TOKEN", "ACCESS_KEY", "PRIVATE_KEY", "CREDENTIAL")
# A job spec nests three levels (spec > instance > types); anything far deeper is not a job spec, and
# checking or copying it would exhaust Python's recursion limit.
MAX_NESTING = 10

# env names a job may not set, and why: each changes how the commands' login shell starts, what the
# dynamic loader puts into every program, or what git does (the agent's own clone included). Exported
# bash functions (BASH_FUNC_name%%) already fail the schema's name pattern.
# PYTHON* stay allowed: PYTHONPATH, PYTHONUNBUFFERED or PYTHONHASHSEED are everyday training settings,
# and they reach the job's commands only, never the agent's interpreter (started before job.json is read).
RESERVED_ENV_PREFIXES = {
    "AWS_": "the AWS SDK reads them; the instance role already grants the job's access",
    "SPOTTRAIN_": "spottrain sets them for your commands",
    "LD_": "the dynamic loader reads them for every program on the instance",
    "GIT_": "git reads them, the agent's own clone included",
}
RESERVED_ENV_NAMES = {
    "PATH": "the AMI user's login profile puts the frameworks' folders on it",
    "HOME": "the clone lives in $HOME, the AMI user's home",
    "SHELL": "the AMI user's login shell sets it",
    **dict.fromkeys(
        ("IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "CDPATH", "GLOBIGNORE", "PS4", "PROMPT_COMMAND"),
        "it changes how bash reads and runs every command",
    ),
    "GLIBC_TUNABLES": "the dynamic loader reads it for every program on the instance",
    # ssh (git's transport for git@ URLs) runs the program SSH_ASKPASS names and uses SSH_AUTH_SOCK's agent
    **dict.fromkeys(
        ("SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", "SSH_AUTH_SOCK", "DISPLAY"), "ssh reads it during the agent's git clone"
    ),
}

_JSON_TYPES = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
    "null": "null",
}
# A string breaks one rule at a time, the plainest first: "" is "empty", not also "has characters ...".
_STRING_RULES = ("minLength", "maxLength", "pattern")


class InvalidJobSpec(Exception):
    """The job spec breaks the schema or the stack's rules; nothing has been created."""

    def __init__(self, problems: list[str]):
        # Problems quote the user's own names and values: a newline, NUL or escape code in them must
        # show as an escape, not break the line or drive the terminal.
        self.problems = [_printable(problem) for problem in problems]
        count = len(self.problems)
        super().__init__(f"job spec has {count} problem{'s' if count != 1 else ''}:\n- " + "\n- ".join(self.problems))


def _printable(text: str) -> str:
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


@functools.lru_cache(maxsize=None)
def load_schema() -> dict:
    """The job spec schema; jsonschema.SchemaError if it is not valid Draft 2020-12."""
    loaded = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


# ----- schema validation (jsonschema) ---------------------------------------------------------


@functools.lru_cache(maxsize=None)
def ecma_pattern(pattern: str) -> re.Pattern:
    """`pattern` compiled with JSON Schema's (ECMA-262) meaning of `$`: the end of the value.

    jsonschema runs `pattern` with Python's re, whose `$` also matches just before a final newline, so
    "^[a-z]+$" would accept "job\\n" and the newline would reach a bucket name, a path or a shell. Every
    unescaped `$` outside a character class becomes `\\Z`; the schema keeps the notation editors understand.
    """
    translated, in_class, escaped = [], False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "$" and not in_class:
            char = r"\Z"
        translated.append(char)
    return re.compile("".join(translated))


def _ecma_pattern_keyword(validator: Any, pattern: str, instance: Any, schema: dict) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not ecma_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _ecma_pattern_keyword})


@functools.lru_cache(maxsize=None)
def _validator() -> Any:
    return _Validator(load_schema())


def schema_problems(spec: Any) -> list[str]:
    """Problems with `spec` under the JSON Schema alone (no stack rules), sorted by field path.

    jsonschema finds them; each error becomes `<field path>: <rule>. <fix>`, the fix being the failing
    property's `x-hint`.
    """
    found: list[tuple[tuple, int, str]] = []
    string_rule_seen: set[tuple] = set()
    errors = sorted(_validator().iter_errors(spec), key=lambda error: (_sortable(error.absolute_path), _rank(error)))
    for error in errors:
        where = tuple(error.absolute_path)
        if error.validator in _STRING_RULES:
            field = (*where, error.instance, "(name)") if "propertyNames" in error.relative_schema_path else where
            if field in string_rule_seen:
                continue
            string_rule_seen.add(field)
        found.extend(_problems(error, where))
    return [text for _, _, text in sorted(found, key=lambda item: (_sortable(item[0]), item[1]))]


def _rank(error: ValidationError) -> int:
    return _STRING_RULES.index(error.validator) if error.validator in _STRING_RULES else -1


def _sortable(path: Any) -> tuple:
    # Siblings are all names (object) or all indexes (list); the kind tag keeps any mix comparable.
    return tuple((isinstance(part, int), str(part).zfill(9) if isinstance(part, int) else part) for part in path)


def _field(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _problems(error: ValidationError, where: tuple) -> Iterator[tuple[tuple, int, str]]:
    """(field path, order, message) for one jsonschema error; an object error may name several fields."""
    keyword, value, instance, schema = error.validator, error.validator_value, error.instance, error.schema
    if keyword == "required":
        for name in value:
            if name not in instance:
                hint_from = schema.get("properties", {}).get(name, {})
                yield (*where, name), 0, _problem(_field((*where, name)), "is required but missing", hint_from)
    elif keyword == "additionalProperties":
        properties = schema.get("properties", {})
        for name in instance:
            if name not in properties:
                yield (*where, name), 1, _unknown_field(_field((*where, name)), name, properties)
    elif keyword == "pattern" and isinstance(instance, str) and ssh.PRIVATE_KEY.search(instance):
        return  # a pasted private key: _private_key_problems names the field and the fix, once
    elif "propertyNames" in error.relative_schema_path:
        yield (*where, instance), -1, _problem(f"{_field((*where, instance))} (name)", _rule(error), schema)
    else:
        yield where, 0, _problem(_field(where), _rule(error), schema)


def _rule(error: ValidationError) -> str:
    keyword, value, instance = error.validator, error.validator_value, error.instance
    if keyword == "type":
        allowed = [value] if isinstance(value, str) else value
        return f"must be {' or '.join(_JSON_TYPES[name] for name in allowed)}, not {_shown(instance)}"
    if keyword == "enum":
        return f"must be one of {', '.join(map(_shown, value))}, not {_shown(instance)}"
    if keyword == "minLength":
        return "must not be empty" if value == 1 else f"must be at least {value} characters, not {len(instance)}"
    if keyword == "maxLength":
        return f"must be at most {value} characters, not {len(instance)}"
    if keyword == "pattern":
        if value == r"\S":
            return "must not be blank"
        # (a pasted private key never gets here: _problems leaves it to _private_key_problems)
        form = name_form_problem(instance) if value == SECRET_NAME.pattern else None
        return f"{_shown(instance)} {form or 'has characters or a form that is not allowed'}"
    if keyword in ("minimum", "maximum"):
        return f"must be at {'least' if keyword == 'minimum' else 'most'} {value}, not {_shown(instance)}"
    if keyword in ("minItems", "maxItems"):
        least = keyword == "minItems"
        return f"must list at {'least' if least else 'most'} {value} item{'(s)' if least else 's'}, not {len(instance)}"
    if keyword == "uniqueItems":
        seen = [json.dumps(item, sort_keys=True) for item in instance]
        return f"must not repeat {', '.join(sorted({item for item in seen if seen.count(item) > 1}))}"
    if keyword == "maxProperties":
        return f"must have at most {value} entries, not {len(instance)}"
    return error.message  # a keyword the schema adds later still reads as a rule, in jsonschema's words


def _problem(path: str, rule: str, schema: dict) -> str:
    hint = schema.get("x-hint")
    return f"{path or 'spec'}: {rule}." + (f" {hint}" if hint else "")


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_field(path: str, name: str, properties: dict) -> str:
    guess = difflib.get_close_matches(name.lower().replace("-", "_"), list(properties), n=1, cutoff=0.6)
    fix = f'Did you mean "{guess[0]}"?' if guess else f"Known fields here: {', '.join(properties)}."
    return f"{path}: is not a known field. {fix}"


# ----- stack rules ----------------------------------------------------------------------------


def semantic_problems(spec: dict, settings: Settings) -> list[str]:
    """Rules that depend on the stack's settings or span fields; tolerant of fields the schema rejected."""
    checks = (
        _bucket_name_problems,
        _instance_problems,
        _limit_problems,
        _on_demand_after_problems,
        _sweep_cap_problems,
        _spend_cap_problems,
        _failure_keep_alive_problems,
        _stack_known_hosts_problems,
    )
    return stack_free_problems(spec) + [problem for check in checks for problem in check(spec, settings)]


def stack_free_problems(spec: dict) -> list[str]:
    """The rules that hold for every stack: what `spottrain submit` checks before it calls AWS."""
    checks = (
        _repository_problems,
        _repository_auth_problems,
        _private_key_problems,
        _directory_problems,
        _env_problems,
        _secrets_problems,
        _nul_problems,
        _size_problems,
        _sweep_problems,
    )
    return [problem for check in checks for problem in check(spec)]


def _bucket_name_problems(spec: dict, settings: Settings) -> Iterator[str]:
    name = spec.get("exec_name")
    if not isinstance(name, str) or not name:
        return
    bucket = names.bucket_name(settings.bucket_prefix, name)
    room = S3_BUCKET_NAME_MAX - len(settings.bucket_prefix) - 1
    if len(bucket) > S3_BUCKET_NAME_MAX:
        yield (
            f'exec_name: the job bucket "{bucket}" would be {len(bucket)} characters, over S3\'s {S3_BUCKET_NAME_MAX}. '
            f"Shorten exec_name to at most {room} characters for this stack's bucket prefix."
        )
    if bucket.endswith(RESERVED_BUCKET_SUFFIXES):
        yield (
            f"exec_name: must not end with {' / '.join(s.lstrip('-.') for s in RESERVED_BUCKET_SUFFIXES)} (S3 reserves those bucket names). "
            "Choose another ending."
        )


def _repository_problems(spec: dict) -> Iterator[str]:
    url = spec.get("repository_url")
    if not isinstance(url, str):
        return
    userinfo = names.URL_USERINFO.match(url)
    # ssh://git@host names the ssh user, which is no secret; before '@' in https, git reads a user or token.
    if userinfo and (":" in userinfo["userinfo"] or userinfo["scheme"] != "ssh"):
        yield (
            "repository_url: must not hold a user name, password or token before '@' (it would be stored in "
            "job.json, logs and emails, and git cannot type a password on the instance). "
            "Use the plain https URL, with the token in a secret named by repository_auth "
            '("repository_auth": {"token_secret": "/spottrain/<name>"}) for a private repository.'
        )
    if "repository_name" not in spec and url and not names.REPOSITORY_NAME.match(names.repository_name(url)):
        yield "repository_name: cannot be derived from repository_url. Set repository_name to the folder name to clone into."


def _repository_auth_problems(spec: dict) -> Iterator[str]:
    """A token for an https URL, a deploy key (and known_hosts that vouch for its host) for an ssh one."""
    yield from repository_auth.problems(spec)


def _stack_known_hosts_problems(spec: dict, settings: Settings) -> Iterator[str]:
    yield from repository_auth.stack_problems(spec, settings.ssh_known_hosts)


def _private_key_problems(spec: dict) -> Iterator[str]:
    """A private key pasted anywhere would be stored in job.json, the execution's input and the logs."""
    for path, text in _strings(spec, ""):
        if ssh.PRIVATE_KEY.search(text):
            yield (
                f"{path or 'spec'}: holds a private key, and a spec is stored in job.json, the execution's input "
                "and logs. Store the key with `spottrain secret put /spottrain/<name> < key-file` and give its name: "
                '"repository_auth": {"ssh_key_secret": "/spottrain/<name>"} (or "secrets" for your commands).'
            )


def _directory_problems(spec: dict) -> Iterator[str]:
    checkpoints, output = spec.get("checkpoint_dir"), spec.get("output_dir")
    # "./result", "result/" and "result" are one folder.
    if isinstance(checkpoints, str) and isinstance(output, str) and _same_folder(checkpoints, output):
        # checkpoints/ mirrors its folder (old snapshots deleted) while output/ keeps everything.
        yield (
            "checkpoint_dir: must differ from output_dir, or every snapshot would also be kept forever in output/. "
            'Use a folder of its own (e.g. "checkpoints"), or omit checkpoint_dir to resume from output_dir.'
        )


def _same_folder(first: str, second: str) -> bool:
    # A relative folder is inside the clone, whose place only the instance knows (the AMI user's home):
    # the agent compares such a pair once it has resolved them.
    same_kind = first.startswith("/") == second.startswith("/")
    return same_kind and posixpath.normpath(first) == posixpath.normpath(second)


def _instance_problems(spec: dict, settings: Settings) -> Iterator[str]:
    instance = spec.get("instance")
    if not isinstance(instance, dict):
        return
    types = instance.get("types")
    if isinstance(types, list):
        allowed = ", ".join(settings.allowed_instance_types)
        for index, name in enumerate(types):
            if isinstance(name, str) and name not in settings.allowed_instance_types:
                yield (
                    f'instance.types[{index}]: "{name}" is not in this stack\'s allowed instance types. '
                    f"Choose from: {allowed} (the stack's allowedInstanceTypes setting widens the list)."
                )
    if instance.get("on_demand_fallback") is True and not settings.on_demand_fallback:
        yield (
            "instance.on_demand_fallback: this stack does not allow on-demand instances. "
            "Remove the field or set it to false (the stack's onDemandFallback setting enables it)."
        )


def _is_whole(value: Any) -> bool:
    """A JSON integer as the schema's "integer" means it (1.0 counts; true does not), for rules that run on specs
    the schema may have rejected."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()


def _on_demand_after_problems(spec: dict, settings: Settings) -> Iterator[str]:
    policy = spec.get("on_demand_after")
    if not isinstance(policy, dict):
        return
    if not policy:
        yield (
            "on_demand_after: is empty, so the job would never switch to on-demand. Give interruptions, "
            'capacity_wait_minutes or both, e.g. {"interruptions": 2}, or remove the field.'
        )
        return
    yield from _interruptions_problems(spec, policy, settings)
    if not settings.on_demand_fallback:
        yield (
            "on_demand_after: this stack does not allow on-demand instances. "
            "Remove the field (the stack's onDemandFallback setting enables it)."
        )
    minutes: Any = policy.get("capacity_wait_minutes")
    window: Any = spec.get("capacity_wait_minutes")
    window = settings.capacity_wait_minutes if window is None else window
    if _is_whole(minutes) and _is_whole(window) and minutes > window:
        yield (
            f"on_demand_after.capacity_wait_minutes: {minutes} is longer than the job's wait for capacity "
            f"({window} minutes), so it would never switch. Use at most {window}, or raise capacity_wait_minutes."
        )


def _interruptions_problems(spec: dict, policy: dict, settings: Settings) -> Iterator[str]:
    # Attempt n follows n - 1 interruptions (spottrain/functions/shared/ondemand.py): the switch needs attempt N + 1
    limits: dict = spec["limits"] if isinstance(spec.get("limits"), dict) else {}
    attempts: Any = limits.get("max_attempts")
    attempts = settings.max_attempts if attempts is None else attempts
    count: Any = policy.get("interruptions")
    if _is_whole(count) and _is_whole(attempts) and count >= attempts:
        fix = f"Use at most {attempts - 1}, or raise" if attempts > 1 else "Raise"
        yield (
            f"on_demand_after.interruptions: {count} can never switch: the job has at most {attempts} attempts "
            f"(limits.max_attempts), so no attempt follows its interruption number {count}. "
            f"{fix} limits.max_attempts."
        )


def _limit_problems(spec: dict, settings: Settings) -> Iterator[str]:
    limits: dict = spec["limits"] if isinstance(spec.get("limits"), dict) else {}
    caps = (  # path, value, cap, the default a job gets when it leaves the field out, the cap's stack setting
        (
            "limits.max_runtime_minutes",
            limits.get("max_runtime_minutes"),
            settings.max_runtime_minutes,
            settings.max_runtime_minutes,
            "maxRuntimeMinutes",
        ),
        (
            "limits.max_attempts",
            limits.get("max_attempts"),
            settings.max_attempts,
            settings.max_attempts,
            "maxAttempts",
        ),
        (
            "keep_alive_minutes",
            spec.get("keep_alive_minutes"),
            settings.max_keep_alive_minutes,
            settings.default_keep_alive_minutes,
            "maxKeepAliveMinutes",
        ),
        (
            "capacity_wait_minutes",
            spec.get("capacity_wait_minutes"),
            settings.max_capacity_wait_minutes,
            settings.capacity_wait_minutes,
            "maxCapacityWaitMinutes",
        ),
    )
    for path, value, cap, default, setting in caps:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
            yield (
                f"{path}: {value} is over this stack's cap of {cap}. "
                f"Use at most {cap}, or leave it out to get the stack's default of {default} "
                f"(the stack's {setting} setting raises the cap)."
            )


def _spend_cap_problems(spec: dict, settings: Settings) -> Iterator[str]:
    cap = settings.max_cost_usd
    limits: dict = spec["limits"] if isinstance(spec.get("limits"), dict) else {}
    value = limits.get("max_cost_usd")
    if cap is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
        yield (
            f"limits.max_cost_usd: {value:g} is over this stack's cap of {cap:g} USD. "
            f"Use at most {cap:g}, or leave it out to get {cap:g} (the stack's maxCostUsd setting raises the cap)."
        )


def _failure_keep_alive_problems(spec: dict, settings: Settings) -> Iterator[str]:
    """The debug door's keep-alive within the stack's maxFailureKeepAliveMinutes (0: the stack has no door)."""
    on_failure = spec.get("on_failure")
    minutes: Any = on_failure.get("keep_alive_minutes") if isinstance(on_failure, dict) else None
    cap = settings.max_failure_keep_alive_minutes
    if not _is_whole(minutes) or minutes <= cap:
        return
    if cap == 0:
        yield (
            "on_failure.keep_alive_minutes: this stack has no debug door (its maxFailureKeepAliveMinutes is 0). "
            "Remove the field, or deploy the stack with -c maxFailureKeepAliveMinutes=30."
        )
    else:
        yield (
            f"on_failure.keep_alive_minutes: {minutes} is over this stack's cap of {cap}. Use at most {cap} "
            "(the stack's maxFailureKeepAliveMinutes setting raises the cap)."
        )


def _env_problems(spec: dict) -> Iterator[str]:
    env = spec.get("env")
    if not isinstance(env, dict):
        return
    for name, value in env.items():
        reserved = _reserved_env_reason(name)  # bash, ld.so and git read names case-sensitively
        if reserved:
            yield (
                f"env.{name}: is reserved: {reserved}. "
                "Rename the variable; to extend PATH or similar, do it in the command itself "
                '(e.g. "export PATH=$PWD/bin:$PATH; python train.py").'
            )
        elif any(part in name.upper() for part in SECRET_NAME_PARTS):
            yield (
                f"env.{name}: looks like a secret, and env is stored in job.json and shown in logs. "
                f"Store the value with `spottrain secret put {SECRETS_PREFIX}<name>` and map the variable to it under "
                f'"secrets" (e.g. "secrets": {{"{name}": "{SECRETS_PREFIX}<name>"}}).'
            )
        if isinstance(value, str) and names.AWS_ACCESS_KEY_ID.search(value):
            yield (
                f"env.{name}: the value looks like an AWS access key id. "
                "Never pass AWS keys to a job: the instance role already grants access to the job's bucket."
            )


def _sweep_problems(spec: dict) -> Iterator[str]:
    """A sweep names at least one variant, no two alike, and each override obeys env's rules (it becomes the child's env)."""
    if not sweep.is_sweep(spec):
        return
    block = spec["sweep"]
    if "grid" not in block and "variants" not in block:
        yield (
            "sweep: must give grid or variants (or both). "
            'Add e.g. "grid": {"LR": ["0.1", "0.01"]} or "variants": [{"LR": "0.1"}].'
        )
    elif not sweep.overrides(block):
        yield (
            "sweep: gives no variants (grid has no values to combine and there is no variants list). "
            'Add e.g. "grid": {"LR": ["0.1", "0.01"]}.'
        )
    yield from _sweep_env_problems(block)
    yield from _sweep_duplicate_problems(spec)
    yield from _sweep_setting_problems(spec)


def _sweep_env_problems(block: dict) -> Iterator[str]:
    """env's rules on each override, reported once where it is written (a grid name, not once per variant)."""
    grid, listed = block.get("grid"), block.get("variants")
    found: dict[str, None] = {}  # ordered and without repeats
    for name, values in grid.items() if isinstance(grid, dict) else []:
        for value in values if isinstance(values, list) else []:
            for problem in _env_problems({"env": {name: value}}):
                found[problem.replace("env.", "sweep.grid.", 1)] = None
    for index, item in enumerate(listed if isinstance(listed, list) else []):
        for problem in _env_problems({"env": item}):
            found[problem.replace("env.", f"sweep.variants[{index}].", 1)] = None
    yield from found


def _sweep_duplicate_problems(spec: dict) -> Iterator[str]:
    """Two variants with the same env would run the same job twice (as uniqueItems refuses inside a grid list)."""
    env = spec.get("env")
    base = env if isinstance(env, dict) else {}
    seen: dict[str, int] = {}
    for number, extra in enumerate(sweep.overrides(spec["sweep"]), start=1):
        key = json.dumps({**base, **extra}, sort_keys=True)
        if key in seen:
            yield (
                f"sweep (variant {number}): has the same env as variant {seen[key]} "
                f"({sweep.describe_overrides(extra) or 'no overrides'}). Drop it from variants or the grid."
            )
        seen.setdefault(key, number)


def _sweep_setting_problems(spec: dict) -> Iterator[str]:
    """What the schema's types let through: 2.0 as max_parallel, an empty part in the metric's path,
    and a job that sends no email in a sweep that asks every variant to."""
    block = spec["sweep"]
    parallel = block.get("max_parallel")
    if isinstance(parallel, float) and parallel.is_integer():
        yield f"sweep.max_parallel: {parallel} must be a whole number. Write {int(parallel)}."
    metric = block.get("metric")
    if isinstance(metric, str) and metric and "" in metric.split("/"):
        yield (
            f"sweep.metric: \"{metric}\" has an empty part between '/'. Name a key of metrics.json, "
            "or a path into it without leading, trailing or doubled '/', e.g. \"heads/color/accuracy\"."
        )
    if spec.get("emails") is False and block.get("emails") == "each":
        yield (
            'sweep.emails: "each" asks every variant to email, but the job\'s emails is false. '
            "Remove one: drop sweep.emails (only the summary is sent), or set the job's emails to true."
        )


def _sweep_cap_problems(spec: dict, settings: Settings) -> Iterator[str]:
    """The stack's caps on a sweep, and the longest variant's name within the bucket-name rules."""
    if not sweep.is_sweep(spec) or not isinstance(spec.get("exec_name"), str):
        return
    count = len(sweep.overrides(spec["sweep"]))
    if count > settings.max_sweep_variants:
        yield (
            f"sweep: {count} variants is over this stack's cap of {settings.max_sweep_variants}. "
            "Drop grid values or variants (the stack's maxSweepVariants setting raises the cap)."
        )
    parallel = spec["sweep"].get("max_parallel")
    # Above the schema's maximum (an inline Map's 40) the schema's error is the one to read.
    if _is_whole(parallel) and settings.max_sweep_parallel < parallel <= INLINE_MAP_MAX:
        yield (
            f"sweep.max_parallel: {parallel} is over this stack's cap of {settings.max_sweep_parallel}. "
            f"Use at most {settings.max_sweep_parallel} (the stack's maxSweepParallel setting raises the cap)."
        )
    yield from _variant_name_problems(spec["exec_name"], count, settings)
    yield from _sweep_size_problems(spec, count)


def _sweep_size_problems(spec: dict, count: int) -> Iterator[str]:
    """The sweep's execution input carries every variant's spec; Step Functions caps an input at 256 KiB
    (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html)."""
    if count < 1:
        return
    size = len(json.dumps(sweep.map_input(spec, "20000101T000000"), separators=(",", ":")).encode())
    if size > SWEEP_INPUT_MAX_BYTES:
        yield (
            f"sweep: the {count} variants' specs make a {size}-byte execution input, over Step Functions' "
            f"{SWEEP_INPUT_MAX_BYTES}-byte limit. Drop variants, or shorten the spec (move long commands into "
            "scripts in the repository)."
        )


def _variant_name_problems(exec_name: str, count: int, settings: Settings) -> Iterator[str]:
    if count < 1:
        return
    longest = sweep.variant_name(exec_name, count)
    room = EXEC_NAME_MAX - len(str(count)) - 1
    if len(longest) > EXEC_NAME_MAX:
        yield (
            f'exec_name: the sweep\'s last variant "{longest}" would be {len(longest)} characters, over {EXEC_NAME_MAX}. '
            f"Shorten exec_name to at most {room} characters for {count} variants."
        )
    bucket = names.bucket_name(settings.bucket_prefix, longest)
    if len(bucket) > S3_BUCKET_NAME_MAX:
        room = S3_BUCKET_NAME_MAX - len(settings.bucket_prefix) - 1 - len(str(count)) - 1
        yield (
            f"exec_name: the sweep's last variant's bucket \"{bucket}\" would be {len(bucket)} characters, over S3's "
            f"{S3_BUCKET_NAME_MAX}. Shorten exec_name to at most {room} characters for {count} variants and this "
            "stack's bucket prefix."
        )


def _secrets_problems(spec: dict) -> Iterator[str]:
    """A secret's variable follows env's naming rules and is not also set in env; its name is under the prefix."""
    secrets, env = spec.get("secrets"), spec.get("env")
    if not isinstance(secrets, dict):
        return
    for name, secret in secrets.items():
        reserved = _reserved_env_reason(name)
        if reserved:
            yield f'secrets.{name}: is reserved: {reserved}. Rename the variable, e.g. "{name.split("_")[-1] or "MY"}_TOKEN".'
        if isinstance(env, dict) and name in env:
            yield (
                f"secrets.{name}: is also set in env, which would be stored in job.json in the clear. "
                f"Remove env.{name}; the secret alone sets the variable."
            )
        # A name off the prefix or with other characters is the schema's pattern problem (one message, its x-hint)
        path_problem = name_path_problem(secret) if isinstance(secret, str) and SECRET_NAME.match(secret) else None
        if path_problem:
            yield (
                f'secrets.{name}: "{secret}" {path_problem}. Give a name like "{SECRETS_PREFIX}team/hf-token": '
                "levels of letters, digits, '.', '-' and '_' joined by single '/'."
            )


def _reserved_env_reason(name: str) -> str | None:
    if name in RESERVED_ENV_NAMES:
        return RESERVED_ENV_NAMES[name]
    return next((why for prefix, why in RESERVED_ENV_PREFIXES.items() if name.startswith(prefix)), None)


def _nul_problems(spec: dict) -> Iterator[str]:
    """No command, path or environment variable can hold NUL: the agent could not pass it on."""
    for path, text in _strings(spec, ""):
        if "\x00" in text:
            yield (
                f"{path or 'spec'}: must not contain a NUL character (\\u0000). "
                "Remove it; a command, path or variable cannot carry one."
            )


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, text) for every string in the spec, names of object members included."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            yield from _strings(key, f"{child} (name)")
            yield from _strings(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _size_problems(spec: dict) -> Iterator[str]:
    size = len(json.dumps(spec, separators=(",", ":")).encode())
    if size > MAX_SPEC_BYTES:
        yield (
            f"spec: is {size} bytes serialized, over the {MAX_SPEC_BYTES}-byte limit. "
            "Move long commands into scripts inside the repository."
        )


# ----- defaults and the public entry point ----------------------------------------------------


def _with_schema_defaults(value: dict, schema: dict) -> dict:
    filled = copy.deepcopy(value)
    for name, child in schema.get("properties", {}).items():
        if name not in filled and "default" in child:
            filled[name] = copy.deepcopy(child["default"])
        if isinstance(filled.get(name), dict) and "properties" in child:
            filled[name] = _with_schema_defaults(filled[name], child)
    return filled


def _whole_numbers(value: Any) -> Any:
    """JSON Schema accepts 3.0 as an integer; the rest of the system wants 3."""
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return int(value) if isinstance(value, float) and value.is_integer() else value


def with_defaults(spec: dict, settings: Settings) -> dict:
    job = _whole_numbers(_with_schema_defaults(spec, load_schema()))
    job["instance"].setdefault("types", list(settings.default_instance_types))
    job["limits"].setdefault("max_runtime_minutes", settings.max_runtime_minutes)
    job["limits"].setdefault("max_attempts", settings.max_attempts)
    if settings.max_cost_usd is not None:
        job["limits"].setdefault("max_cost_usd", settings.max_cost_usd)
    job.setdefault("keep_alive_minutes", settings.default_keep_alive_minutes)
    job.setdefault("capacity_wait_minutes", settings.capacity_wait_minutes)
    job.setdefault("repository_name", names.repository_name(job["repository_url"]))
    _fill_repository_auth(job, settings)
    job["bucket"] = names.bucket_name(settings.bucket_prefix, job["exec_name"])
    return job


def spec_problems(spec: Any, settings: Settings | None) -> list[str]:
    """Every problem with the spec; without settings, only the rules that hold for any stack."""
    if _nesting(spec) > MAX_NESTING:
        return [
            f"spec: is nested more than {MAX_NESTING} levels deep; a job spec nests three "
            "(spec > instance > types). Give one object like the files in examples/jobs/."
        ]
    problems = schema_problems(spec)
    if isinstance(spec, dict):
        problems += semantic_problems(spec, settings) if settings else stack_free_problems(spec)
    return problems


def _nesting(value: Any) -> int:
    """How deep objects and lists nest, counted without recursion (and only as far as needed)."""
    deepest, pending = 0, [(value, 1)]
    while pending and deepest <= MAX_NESTING:
        node, level = pending.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level)
            pending.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def validate_spec(spec: Any, settings: Settings) -> dict:
    """The job with defaults filled plus "bucket" and "repository_name"; InvalidJobSpec lists every problem."""
    problems = spec_problems(spec, settings)
    if problems:
        raise InvalidJobSpec(problems)
    return with_defaults(spec, settings)


def _fill_repository_auth(job: dict, settings: Settings) -> None:
    if "repository_auth" in job:
        job["repository_auth"] = repository_auth.filled(job["repository_auth"], settings.ssh_known_hosts)
