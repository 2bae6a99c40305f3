"""`spottrain`: run the demo, validate and submit job specs, follow, cancel and list jobs.

Against AWS it uses your normal credentials and the deployed stack's outputs (`--stack-name`);
`demo` and `submit --local` run the same stack in the embedded emulator instead.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from spottrain import jobs
from spottrain.console import Console

if TYPE_CHECKING:  # the emulator is imported only by the commands that start it
    from spottrain.contract.settings import Settings
    from spottrain.local.faults import Faults

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_SPEC = REPO_ROOT / "examples" / "jobs" / "multihead-demo.json"
LOCAL_TIMEOUT_SECONDS = 900  # a local job that takes longer is stuck, not slow
AWS_POLL_SECONDS = 10.0  # following a real job: fresh enough, and a few API calls a minute


class UsageError(Exception):
    """Bad input from the user: one clear line, exit code 2."""


def load_spec(path: str) -> dict:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        spec = json.loads(_utf8_text(path, data))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise UsageError(
            f"{path} nests JSON too deeply to read; a job spec nests three levels (see examples/jobs/)"
        ) from None
    except ValueError:  # Python refuses to convert integers longer than sys.get_int_max_str_digits()
        raise UsageError(
            f"{path} holds a number with more than {sys.get_int_max_str_digits()} digits; "
            "no job spec field takes one: fix that number"
        ) from None
    if not isinstance(spec, dict):
        raise UsageError(f"{path} must hold a JSON object (the job spec), not {type(spec).__name__}")
    return spec


_WIDE_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",  # before UTF-16: FF FE starts both
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}
_SAVE_AS_UTF8 = "save it as UTF-8 (with or without a BOM), as JSON requires"


def _utf8_text(path: str, data: bytes) -> str:
    encoding = next((name for bom, name in _WIDE_BOMS.items() if data.startswith(bom)), None)
    if encoding:
        raise UsageError(f"{path} is {encoding} text: {_SAVE_AS_UTF8}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path} is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}): {_SAVE_AS_UTF8}"
        ) from None
    if "\x00" in text:  # UTF-16 without a BOM: every other byte of ASCII text is NUL
        raise UsageError(f"{path} holds NUL bytes, as UTF-16 text does: {_SAVE_AS_UTF8}")
    return text


def checked_spec(path: str, settings: Settings | None) -> dict:
    """The spec read from `path` if it passes validation (without settings: the rules every stack shares)."""
    from spottrain.contract.jobspec import spec_problems

    spec = load_spec(path)
    problems = spec_problems(spec, settings)
    if problems:
        raise UsageError(
            f"{path} is not a valid job spec (`spottrain validate {path}` explains): " + " | ".join(problems)
        )
    return spec


# ---------------------------------------------------------------- AWS session


def _aws(args: argparse.Namespace) -> tuple[Any, jobs.Stack]:
    import boto3

    # botocore reads AWS_DEFAULT_REGION only; AWS_REGION is what the other SDKs and Lambda set
    region = args.region or os.environ.get("AWS_REGION") or None
    _check_endpoint_url(os.environ.get("AWS_ENDPOINT_URL"))
    session = boto3.Session(profile_name=args.profile, region_name=region)
    return session, jobs.Stack.lookup(session.client("cloudformation"), args.stack_name)


def _check_endpoint_url(url: str | None) -> None:
    """botocore raises a bare ValueError on an AWS_ENDPOINT_URL without scheme or with a bad port."""
    from urllib.parse import urlsplit

    if not url:
        return
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise UsageError(f"AWS_ENDPOINT_URL={url}: {exc}; give e.g. http://127.0.0.1:5000") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"AWS_ENDPOINT_URL={url}: not an http(s) URL; give e.g. http://127.0.0.1:5000 "
            "(what `spottrain submit --local` prints for other shells)"
        )


def _clients(session: Any) -> tuple[Any, Any]:
    return session.client("stepfunctions"), session.client("s3")


# ---------------------------------------------------------------- commands


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from spottrain.contract.jobspec import InvalidJobSpec, validate_spec
    from spottrain.settings import StackSettingsUnknown, deployed_settings

    spec = load_spec(args.spec)
    if args.stack_name:
        session, _ = _aws(args)  # a missing stack or AWS set-up fails here, in one line
        try:
            settings = deployed_settings(session.client("cloudformation"), session.client("lambda"), args.stack_name)
        except StackSettingsUnknown as exc:
            raise UsageError(str(exc)) from None
        against = f"stack {args.stack_name}'s settings (its ValidateJob's environment)"
    else:
        settings, against = _offline_settings()
    try:
        job = validate_spec(spec, settings)
    except InvalidJobSpec as exc:
        console.say(f"✗ {args.spec} is not a valid job spec:")
        for problem in exc.problems:
            console.say(f"  - {problem}")
        console.say(f"  (checked against {against})")
        return 1
    console.say(f"✓ {args.spec} is valid: job {job['exec_name']!r} → bucket {job['bucket']}")
    console.say(f"  (checked against {against})")
    if "sweep" in spec:
        from spottrain import sweep_commands

        sweep_commands.say_variants(console, spec)
    return 0


def _offline_settings() -> tuple[Any, str]:
    from spottrain.settings import cdk_json_overrides, default_settings

    overrides = cdk_json_overrides()
    against = "the defaults cdk.json deploys (spottrain/contract/defaults.py"
    if overrides:
        against += f"; cdk.json's own {', '.join(overrides)} not applied"
    return default_settings(), against + "); pass --stack-name NAME to check against a deployed stack"


def _follow(console: Console, sfn: Any, s3: Any, stack: jobs.Stack, arn: str, timeout: float, interval: float) -> dict:
    try:
        return jobs.wait(sfn, s3, stack, arn, timeout=timeout, on_progress=console.progress, interval=interval)
    finally:
        console.end_progress()


# The agent's failures before the commands run, whose message names the field and the fix
# (spottrain/agent/lifecycle.py): the CLI's last line gives it instead of the workflow's generic cause.
_AGENT_FAILURES = {
    "secret_unreadable": "a secret could not be read",
    "clone_failed": "the repository could not be cloned",
    "restore_failed": "the checkpoints could not be restored",
    "job_invalid": "the instance refused the job spec",
    "job_unreadable": "the instance could not read the job spec",
}


def _report_end(console: Console, execution: dict, detail: dict | None = None) -> int:
    """Prints the job's last line; detail: the failed attempt's (`_failure_detail`), read while the
    stack is reachable."""
    status = execution["status"]
    if status == "SUCCEEDED":
        console.say(f"✓ {execution['name']} succeeded")
        return 0
    text = failure_text(execution.get("error"), execution.get("cause"))
    detail = detail or {}
    said = _AGENT_FAILURES.get(detail.get("reason") or "")
    if said and detail.get("message"):  # the generic cause would send the user to the logs
        text = f"{said}: {detail['message']}"
    if not text and status == "ABORTED":  # StopExecution gives no error nor cause unless its caller did
        text = "stopped before it ended (`spottrain cancel`, or StopExecution from the console or an SDK)"
    console.say(f"✗ {execution['name']} {status.lower()}: {text}")
    return 1


def _failure_detail(sfn: Any, execution: dict) -> dict:
    """The agent's reason for a TrainingFailed end (the Fail state's cause is generic); {} otherwise."""
    if execution.get("error") != "TrainingFailed":
        return {}
    return jobs.last_poll_detail(sfn, execution["executionArn"])


def failure_text(error: str | None, cause: str | None) -> str:
    """A failed execution's error and cause on one line. A Lambda's unhandled error reaches Step Functions
    as its JSON payload (errorType, errorMessage, stackTrace): only the type and message are shown
    (https://docs.aws.amazon.com/lambda/latest/dg/python-exceptions.html)."""
    try:
        payload = json.loads(cause or "")
    except ValueError:
        payload = None
    if isinstance(payload, dict) and "errorMessage" in payload:
        error, cause = payload.get("errorType") or error, str(payload["errorMessage"])
    return f"{error or ''} {cause or ''}".strip()


def cmd_submit(args: argparse.Namespace, console: Console) -> int:
    from spottrain.settings import default_settings

    if args.local:
        # The emulator deploys the default context: its settings are known before it starts.
        return _run_local(args, console, _offline(checked_spec(args.spec, default_settings())), download_to=None)
    spec = checked_spec(args.spec, settings=None)  # the deployed stack's own caps are ValidateJob's to check
    session, stack = _aws(args)
    sfn, s3 = _clients(session)
    if "sweep" in spec:
        from spottrain import sweep_commands

        return sweep_commands.submit(console, sfn, s3, stack, spec, args.wait, args.timeout)
    jobs.refuse_if_running(sfn, stack, spec["exec_name"])
    arn = jobs.start(sfn, stack, spec)
    console.say(f"started {arn}")
    if not args.wait:
        console.say(
            f"follow it with: spottrain status {spec['exec_name']}  |  spottrain logs {spec['exec_name']} --follow"
        )
        return 0
    execution = _follow(console, sfn, s3, stack, arn, args.timeout or float("inf"), AWS_POLL_SECONDS)
    return _report_end(console, execution, _failure_detail(sfn, execution))


def _offline(spec: dict) -> dict:
    """The emulator reaches no network: a spec cloning this project's own repository clones this checkout."""
    from spottrain.demo import demo_spec

    own = load_spec(str(DEMO_SPEC))["repository_url"]
    if spec.get("repository_url") != own:
        return spec
    if "repository_auth" in spec:  # the rewritten file:// URL takes no token or key: the agent's clone would fail
        raise UsageError(
            f"repository_auth: --local clones this checkout instead of {own}, and a token or deploy key needs "
            "an https or ssh server: remove repository_auth for --local (tests/e2e/test_emulator_secrets.py "
            "and test_emulator_ssh.py run private repositories against the emulator)"
        )
    return demo_spec(REPO_ROOT, spec)


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    session, stack = _aws(args)
    sfn, s3 = _clients(session)
    if not args.name:
        return cmd_list(args, console)
    from spottrain import sweep_commands

    if sweep_commands.status(console, sfn, stack, args.name):
        return 0
    execution = jobs.current_execution(sfn, stack, args.name)
    console.say(jobs.progress(sfn, s3, stack, execution["executionArn"]).line())
    return 0


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    session, stack = _aws(args)
    sfn, _ = _clients(session)
    executions = jobs.list_executions(sfn, stack)
    if not executions:
        console.say("no jobs yet: spottrain submit <spec.json>")
        return 0
    console.table(
        ("job", "status", "started", "execution"),
        [
            (jobs.job_of(e["name"]), e["status"], e["startDate"].strftime("%Y-%m-%d %H:%M"), e["name"])
            for e in executions
        ],
    )
    return 0


def cmd_logs(args: argparse.Namespace, console: Console) -> int:
    session, stack = _aws(args)
    sfn, s3 = _clients(session)
    execution = jobs.current_execution(sfn, stack, args.name)

    def running() -> bool:
        return sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "RUNNING"

    # Readable text, not the raw bytes (those stay in S3): a progress bar's redraws would fill the screen.
    for chunk in jobs.readable_stream(jobs.follow_logs(s3, stack.job_bucket(args.name), args.follow, running)):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    return 0


def cmd_cancel(args: argparse.Namespace, console: Console) -> int:
    session, stack = _aws(args)
    from spottrain import sweeps

    sfn, lambda_ = session.client("stepfunctions"), session.client("lambda")
    cancel = sweeps.cancel if sweeps.current(sfn, stack, args.name) else jobs.cancel
    stopped = cancel(sfn, lambda_, stack, args.name)
    console.say(
        f"cancelled {args.name}: stopped {', '.join(stopped) or 'no running execution'}; its instances are terminated"
    )
    return 0


def cmd_shell(args: argparse.Namespace, console: Console) -> int:
    from spottrain.local.shell import NoKeptInstance, kept_instance, open_shell, shell_folder

    try:
        instance = kept_instance(Path(args.workdir).resolve(), args.name)
    except NoKeptInstance as missing:
        console.error(str(missing))
        return 1
    console.say(
        f"shell on {instance.name} in {shell_folder(instance)} (the emulator's start-session); "
        "exit to leave, the instance is terminated when its keep-alive ends"
    )
    return open_shell(instance)


def cmd_cost(args: argparse.Namespace, console: Console) -> int:
    from spottrain import cost

    local = Path(args.runs) / args.name / "report.json"
    try:
        report = cost.local_report(Path(args.runs), args.name)
        where = str(local)
        if report is None:  # not downloaded: ask the deployed stack's job bucket
            report, where = _bucket_cost_report(args, local)
        cost.show(report, where)
    except (cost.ReportNotFound, cost.ReportUnreadable) as exc:
        raise UsageError(str(exc)) from None
    return 0


def _bucket_cost_report(args: argparse.Namespace, local: Path) -> tuple[dict, str]:
    from spottrain import cost

    try:
        session, stack = _aws(args)
        bucket = stack.job_bucket(args.name)
        return cost.bucket_report(session.client("s3"), bucket), f"s3://{bucket}/report.json"
    except jobs.JobNotFound as exc:
        raise UsageError(f"no {local}, and {exc}") from None
    except Exception as exc:  # noqa: BLE001 - an AWS set-up problem: say that neither place was reachable
        line = aws_problem(exc)
        if line is None:
            raise
        raise UsageError(
            f"no {local} (download the results, or pass --runs), and the job's bucket cannot be read: {line}"
        ) from None


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from spottrain.demo import demo_spec

    spec = demo_spec(REPO_ROOT, load_spec(str(DEMO_SPEC)))
    return _run_local(args, console, spec, download_to=Path(args.runs) / spec["exec_name"])


def cmd_secret_put(args: argparse.Namespace, console: Console) -> int:
    from spottrain.secret_store import SecretUsageError, check_name, put_secret, read_value

    try:
        name = check_name(args.name)
        # A pipe is read first, so an empty one is refused before any AWS call; a prompt comes once the
        # stack is found (its jobs' secrets roles read the value), so nothing is typed for a missing stack.
        piped = None if sys.stdin.isatty() else read_value(name, sys.stdin)
        if piped == "":
            raise SecretUsageError(f"secret {name}: the value is empty; give it on stdin or at the prompt")
        session, _ = _aws(args)
        version = put_secret(session.client("ssm"), name, read_value(name, sys.stdin) if piped is None else piped)
    except SecretUsageError as exc:
        raise UsageError(str(exc)) from None
    console.say(f'stored {name} (SecureString, version {version}); a job reads it with "secrets": {{"VAR": "{name}"}}')
    return 0


def _run_local(args: argparse.Namespace, console: Console, spec: dict, download_to: Path | None) -> int:
    from spottrain.local import Emulator, FaultError, Faults, capacity_wait_seconds
    from spottrain.secret_store import SecretUsageError, parse_local_secrets, put_secret, unseeded_problems

    try:  # every --inject and --local-secret is checked, against the stack's allow-list too, before anything starts
        faults = Faults.parse(args.inject)
        faults.check_outage(capacity_wait_seconds(spec))
        local_secrets = parse_local_secrets(args.local_secret, sys.stdin)
        unseeded = unseeded_problems(spec, local_secrets)
        if unseeded:
            raise SecretUsageError("; ".join(unseeded))
        emulator = Emulator(
            Path(args.workdir), faults=faults, on_email=console.email, agent_env=local_agent_env(os.environ)
        )
    except (FaultError, SecretUsageError) as exc:
        raise UsageError(str(exc)) from None
    started = time.monotonic()
    console.say(f"starting the embedded AWS emulator in {args.workdir}/ (faults: {faults.describe() or 'none'})")
    with emulator:
        console.say(f"stack deployed in {time.monotonic() - started:.1f}s; submitting {spec['exec_name']}")
        console.say(local_commands_hint(emulator.endpoint, emulator.stack_name, spec["exec_name"]))
        door = debug_door_hint(spec, args.workdir)
        if door:
            console.say(door)
        session = emulator.session()
        for name, value in local_secrets.items():
            put_secret(session.client("ssm"), name, value)
        sfn, s3 = _clients(session)
        stack = jobs.Stack.from_outputs(emulator.outputs)
        if "sweep" in spec:
            from spottrain import sweep_commands

            code = sweep_commands.submit(
                console,
                sfn,
                s3,
                stack,
                spec,
                wait=True,
                interval=1.0,
                timeout=args.timeout or sweep_commands.LOCAL_TIMEOUT_SECONDS,
            )
            emulator.wait_for_emails(len(emulator.emails) + 1, timeout=0.5)
            console.say(f"total {time.monotonic() - started:.1f}s")
            return _report_faults(console, faults) or code
        arn = jobs.start(sfn, stack, spec)
        execution = _follow(console, sfn, s3, stack, arn, args.timeout or LOCAL_TIMEOUT_SECONDS, interval=1.0)
        emulator.wait_for_emails(len(emulator.emails) + 1, timeout=0.5)
        detail = _failure_detail(sfn, execution)
        if download_to is not None:
            bucket = stack.job_bucket(spec["exec_name"])
            jobs.download(s3, bucket, download_to)
            _describe_results(console, download_to)
    console.say(f"total {time.monotonic() - started:.1f}s")
    code = _report_end(console, execution, detail)
    return _report_faults(console, faults) or code


def _report_faults(console: Console, faults: Faults) -> int:
    """A fault that was asked for and never happened must not pass for a run that survived it."""
    missed = faults.never_fired()
    for line in missed:
        console.error(line)
    return 1 if missed else 0


def _describe_results(console: Console, folder: Path) -> None:
    console.say(f"results downloaded to {folder}/")
    for pattern, what in (
        ("output/*.png", "plot"),
        ("output/*.npz", "model"),
        ("output/metrics.json", "metrics"),
        ("report.json", "report"),
    ):
        for path in sorted(folder.glob(pattern)):
            console.say(f"  {what:<8} {path}")
    metrics = _read_json_file(folder / "output" / "metrics.json")
    if metrics.get("heads"):
        accuracies = ", ".join(f"{name} {head['accuracy']:.0%}" for name, head in metrics["heads"].items())
        resumed = metrics.get("resumed_from_iteration")
        resumed_note = f" (resumed from iteration {resumed})" if resumed else ""
        console.say(f"validation accuracy after {metrics.get('iterations')} iterations{resumed_note}: {accuracies}")
    report = _read_json_file(folder / "report.json")
    if report.get("attempts"):
        console.say(
            f"{len(report['attempts'])} attempt(s), {report['billable_seconds']}s billable, "
            f"estimated ${report['estimated_cost_usd']:.4f} (on-demand ${report['on_demand_cost_usd']:.4f})"
        )
    for wait in report.get("capacity_waits", []):
        console.say(
            f"attempt {wait['attempt']} waited for spot capacity from {wait['started_at']} to "
            f"{wait.get('ended_at') or 'now'} ({wait['waits']} waits): {wait['outcome']}"
        )


def _read_json_file(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spottrain", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable, help_: str, aws: bool = True, local: bool = False) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_)
        sub.set_defaults(handler=handler)
        if aws:
            sub.add_argument("--stack-name", default="SpotTrain", help="deployed stack (default: SpotTrain)")
            sub.add_argument("--profile", help="AWS profile (default: your default credentials)")
            sub.add_argument("--region", help="AWS region (default: your default region)")
        if local:
            sub.add_argument(
                "--workdir", default=".spottrain", help="where the emulator keeps its state (default: .spottrain)"
            )
            sub.add_argument(
                "--inject",
                action="append",
                default=[],
                metavar="NAME=VALUE",
                help="fault (repeatable): no-capacity=<type>[,<type>] (no room for those types), "
                "capacity-outage=<seconds> (no room anywhere for that long), "
                "interrupt-at=checkpoint[:<n>] (spot notice once the n-th checkpoint is in S3), "
                "interrupt-after=<seconds into training>[:<instances>], "
                "lambda-error=<task>:<count> (transient failures); a fault that never fired "
                "makes the run exit 1",
            )
            sub.add_argument(
                "--local-secret",
                action="append",
                default=[],
                metavar="NAME[=VALUE]",
                help="seed the emulator's SSM with a SecureString (repeatable), e.g. "
                "/spottrain/hf-token=... for a job whose secrets name it; NAME alone reads the value "
                "at a prompt that does not echo it, or from stdin, and keeps it out of the process list",
            )
            sub.add_argument(
                "--timeout",
                type=float,
                help="give up waiting after this many seconds (default: never on AWS, 900 in the emulator)",
            )
        return sub

    demo = add(
        "demo", cmd_demo, "run the bundled multi-head job end to end in the embedded emulator", aws=False, local=True
    )
    demo.add_argument("--runs", default="runs", help="where results are downloaded (default: runs/)")

    validate = add("validate", cmd_validate, "check a job spec exactly as the workflow's ValidateJob does", aws=False)
    validate.add_argument("spec")
    validate.add_argument(
        "--stack-name",
        help="check against this deployed stack's settings "
        "(default: offline, against the defaults in spottrain/contract/defaults.py and cdk.json)",
    )
    validate.add_argument("--profile", help="AWS profile, with --stack-name (default: your default credentials)")
    validate.add_argument("--region", help="AWS region, with --stack-name (default: your default region)")

    submit = add("submit", cmd_submit, "start a job (on AWS, or --local in the emulator)", local=True)
    submit.add_argument("spec")
    submit.add_argument("--local", action="store_true", help="run in the embedded emulator (waits for the end)")
    submit.add_argument("--wait", action="store_true", help="follow the job until it ends")

    status = add("status", cmd_status, "show a job's state, attempt, instance and last log line")
    status.add_argument("name", nargs="?")

    logs = add("logs", cmd_logs, "print a job's training log")
    logs.add_argument("name")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")

    cancel = add("cancel", cmd_cancel, "stop a job and terminate its instances and spot requests")
    cancel.add_argument("name")

    add("list", cmd_list, "list the jobs of the stack")

    shell = add(
        "shell",
        cmd_shell,
        "emulator only: open a shell in a failed job's simulated instance while "
        "on_failure.keep_alive_minutes keeps it (on AWS: the email's aws ssm start-session)",
        aws=False,
    )
    shell.add_argument("name")
    shell.add_argument("--workdir", default=".spottrain", help="the emulator's state (default: .spottrain)")

    cost = add("cost", cmd_cost, "a job's cost per attempt and in total, against on-demand")
    cost.add_argument("name")
    cost.add_argument("--runs", default="runs", help="downloaded results, read first (default: runs/)")
    secret = commands.add_parser("secret", help="store a job's secret values (SSM SecureString under /spottrain/)")
    secret_commands = secret.add_subparsers(dest="secret_command", required=True, metavar="ACTION")
    put = secret_commands.add_parser("put", help="store NAME's value, read from stdin or a prompt that does not echo")
    put.set_defaults(handler=cmd_secret_put)
    put.add_argument("name", help="e.g. /spottrain/hf-token")
    for flag, help_ in (
        ("--stack-name", "deployed stack (default: SpotTrain)"),
        ("--profile", "AWS profile"),
        ("--region", "AWS region (default: your default region)"),
    ):
        put.add_argument(flag, default="SpotTrain" if flag == "--stack-name" else None, help=help_)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return args.handler(args, console)
    except (UsageError, jobs.JobNotFound, jobs.JobAlreadyRunning) as exc:
        console.error(str(exc))
        return 2
    except TimeoutError as exc:
        console.error(f"gave up waiting: {exc}")
        return 1
    except KeyboardInterrupt:
        console.say("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - AWS set-up problems get one line; anything else stays a traceback
        line = aws_problem(exc)
        if line is None:
            raise
        console.error(line)
        return 2


def local_commands_hint(endpoint: str, stack_name: str, exec_name: str) -> str:
    """How another shell reaches this emulator while it runs (its credentials are moto's placeholders)."""
    from spottrain.local.server import REGION

    return (
        f"from another shell, while this runs: AWS_ENDPOINT_URL={endpoint} AWS_REGION={REGION} "
        f"AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing spottrain status|cancel {exec_name} "
        f"--stack-name {stack_name}"
    )


def local_agent_env(environ: Mapping[str, str]) -> dict[str, str]:
    """What the simulated instances take of the user's environment: only GIT_SSL_CAINFO, the certificate of a
    loopback https git host (self-signed), which they trust as an AMI trusts the public CAs in its store."""
    cainfo = environ.get("GIT_SSL_CAINFO")
    if not cainfo:
        return {}
    path = Path(cainfo).expanduser().resolve()
    if not path.is_file():
        raise UsageError(
            f"GIT_SSL_CAINFO={cainfo}: no such file. Give the PEM file of the certificate your loopback https git "
            "host serves (the simulated instances trust it), or unset GIT_SSL_CAINFO"
        )
    return {"GIT_SSL_CAINFO": str(path)}


def debug_door_hint(spec: dict, workdir: str) -> str | None:
    """How to open the debug door of a --local run (the email gives AWS's command); None without a door."""
    minutes = (spec.get("on_failure") or {}).get("keep_alive_minutes") or 0
    if not minutes:
        return None
    name = spec["exec_name"] + ("-<n>" if "sweep" in spec else "")  # a sweep's variants are <exec_name>-<n>
    return (
        f"if it fails, its instance is kept for {minutes} s: look inside from another shell with "
        f"`spottrain shell {name} --workdir {workdir}` (the email's aws ssm start-session is for AWS)"
    )


def aws_problem(exc: Exception) -> str | None:
    """One line saying what is wrong with the AWS set-up and how to fix it; None for other errors."""
    from botocore import exceptions as aws

    if isinstance(exc, aws.NoRegionError):
        return "no AWS region configured: pass --region, set AWS_REGION, or run `aws configure`"
    if isinstance(exc, (aws.NoCredentialsError, aws.PartialCredentialsError)):
        return "no AWS credentials found: run `aws configure` (or `aws sso login`), or pass --profile"
    if isinstance(exc, aws.ProfileNotFound):
        return f"{exc}: pass an existing --profile (see ~/.aws/config)"
    if isinstance(exc, (aws.ConnectionError, aws.HTTPClientError)):
        if os.environ.get("AWS_ENDPOINT_URL"):
            return (
                f"nothing answers at AWS_ENDPOINT_URL={os.environ['AWS_ENDPOINT_URL']} ({exc}): is the "
                "`spottrain submit --local` that printed it still running? Unset AWS_ENDPOINT_URL to reach AWS."
            )
        return f"cannot reach AWS ({exc}): check your network, proxy and --region"
    if isinstance(exc, aws.ClientError):
        error = exc.response.get("Error", {})
        return f"AWS refused {exc.operation_name}: {error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")
    if isinstance(exc, aws.BotoCoreError):
        return f"AWS SDK: {exc}"
    return None


if __name__ == "__main__":
    sys.exit(main())
