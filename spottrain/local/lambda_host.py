"""Runs a deployed Lambda function's handler in this process, from the code zip moto stores.

moto would need Docker to invoke a function; the emulator instead unpacks the function's own asset
(what CloudFormation deployed, not the repo's working tree) into the sandbox and calls its handler
with the function's environment. The asset holds `spottrain.contract` and `spottrain.functions`, which
the emulator itself imports from the repository: each function keeps its own copy of those two
packages and swaps it into `sys.modules` only while it runs, found in its asset and nowhere else (a
module missing from the asset fails here as it would on AWS). `spottrain` itself and the emulator's
own packages are never swapped. Invocations are serialized because they also swap `os.environ`.

The host also records every AWS API call a handler makes (`calls`): moto enforces no IAM, so these
are what tests compare with the deployed roles' policies (see spottrain/local/iam_check.py).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib
import importlib.abc
import importlib.machinery
import io
import logging
import os
import sys
import threading
import time
import traceback
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple

from botocore.client import BaseClient

import spottrain

# The packages a function's asset brings; everything else it imports is the emulator's (boto3, Powertools).
ASSET_PACKAGES = ("spottrain.contract", "spottrain.functions")
_RUN_LOCK = threading.RLock()
_INVOKING = threading.local()  # .active: this thread is running a handler right now; .calls: where its calls go


def _in_handler() -> bool:
    return getattr(_INVOKING, "active", False)


class ApiCall(NamedTuple):
    """One AWS API call a function made: its handler ("spottrain.functions.notify.handler") and botocore's names."""

    handler: str
    service: str  # botocore's service name: "s3", "ec2", "sns"
    operation: str  # the API operation: "HeadBucket", "RunInstances"


class _ApiCallRecording:
    """Wraps BaseClient._make_api_call, the one path every client call takes, while any host lives.

    Handlers cache their clients at cold start, so hooking each client's events would miss those;
    the class-level wrapper sees them all. Only calls made on a thread inside a handler are recorded
    (moto's server, the emulator and the tests use clients too), into that handler's host.
    """

    _lock = threading.Lock()
    _users = 0
    _original: Callable | None = None

    @classmethod
    def acquire(cls) -> None:
        with cls._lock:
            if cls._users == 0:
                cls._original = BaseClient._make_api_call
                BaseClient._make_api_call = _make_api_call_recorded
            cls._users += 1

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users == 0:
                # _original stays set: a handler still running on another thread may be inside the wrapper
                BaseClient._make_api_call = cls._original


def _make_api_call_recorded(client: BaseClient, operation_name: str, api_params: dict) -> Any:
    calls = getattr(_INVOKING, "calls", None)
    if calls is not None:
        # recorded before the call: on AWS a denied call fails too, so an attempt needs the permission
        calls.add(ApiCall(_INVOKING.handler, client.meta.service_model.service_name, operation_name))
    original = _ApiCallRecording._original
    assert original is not None  # set before the wrapper is installed, never unset
    return original(client, operation_name, api_params)


class _ThreadRoutedStream(io.TextIOBase):
    """sys.stdout/stderr stand-in: a handler's prints go to the functions log, everyone else's stay.

    redirect_stdout would swap the stream for every thread, hiding the emulator's own output while
    a handler runs.
    """

    def __init__(self, original: Any, log: io.TextIOBase):
        self.original = original
        self.log = log

    def write(self, text: str) -> int:
        return (self.log if _in_handler() else self.original).write(text)

    def flush(self) -> None:
        (self.log if _in_handler() else self.original).flush()

    def isatty(self) -> bool:
        return False if _in_handler() else self.original.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


@dataclasses.dataclass
class FunctionSpec:
    """What the emulator needs to know about one deployed function (read from moto's model)."""

    name: str
    arn: str
    handler: str
    code_sha: str
    code_zip: bytes
    environment: dict[str, str]
    timeout: int = 3
    memory_mb: int = 128


@dataclasses.dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    deadline: float
    aws_request_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.time()) * 1000))


class _LoadedFunction:
    def __init__(self, spec: FunctionSpec, code_dir: Path, modules: dict[str, Any], handler: Callable):
        self.spec = spec
        self.code_dir = code_dir
        self.modules = modules
        self.handler = handler


class LambdaHost:
    """Cold-starts each function once (per code version) and invokes it like Lambda would."""

    def __init__(self, workdir: Path, base_env: dict[str, str]):
        self.workdir = workdir
        self.base_env = base_env  # region, endpoint, fake credentials
        self._loaded: dict[str, _LoadedFunction] = {}
        # One file for every function's output, open for the host's lifetime: Powertools binds its
        # handler to sys.stdout at cold start, so the stream must outlive the invocation.
        self.log_path = workdir / "lambda" / "functions.log"
        self._log: io.TextIOBase | None = None
        self._streams: tuple[Any, Any] | None = None
        self.calls: set[ApiCall] = set()
        self.invocations: collections.Counter[str] = collections.Counter()  # ended ones, by handler, calls or not
        self._recording = False

    def close(self) -> None:
        if self._recording:
            _ApiCallRecording.release()
            self._recording = False
        if self._streams is not None:
            sys.stdout, sys.stderr = self._streams
            self._streams = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _route_output(self) -> None:
        if self._streams is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "a", encoding="utf-8", buffering=1)
            self._streams = (sys.stdout, sys.stderr)
            sys.stdout = _ThreadRoutedStream(sys.stdout, self._log)
            sys.stderr = _ThreadRoutedStream(sys.stderr, self._log)

    def _record_api_calls(self) -> None:
        if not self._recording:
            _ApiCallRecording.acquire()
            self._recording = True

    def invoke(self, spec: FunctionSpec, event: Any) -> tuple[Any, bool]:
        """Run the handler; returns (payload, errored) where an error payload is what Lambda returns."""
        with _RUN_LOCK:
            try:
                function = self._load(spec)
                context = LambdaContext(
                    function_name=spec.name,
                    invoked_function_arn=spec.arn,
                    memory_limit_in_mb=spec.memory_mb,
                    deadline=time.time() + spec.timeout,
                    log_group_name=f"/aws/lambda/{spec.name}",
                )
                with self._running(function):
                    try:
                        return function.handler(event, context), False
                    finally:
                        # Counted once it has ended: whoever waits for an invocation then sees all its calls.
                        self.invocations[spec.handler] += 1
            except Exception as exc:  # noqa: BLE001 - every handler failure becomes a Lambda error payload
                return error_payload(exc), True

    def _load(self, spec: FunctionSpec) -> _LoadedFunction:
        loaded = self._loaded.get(spec.arn)
        if loaded is not None and loaded.spec.code_sha == spec.code_sha:
            return loaded
        code_dir = self.workdir / "lambda" / spec.name / (spec.code_sha or "code")[:12]
        if not code_dir.is_dir():
            code_dir.mkdir(parents=True)
            with zipfile.ZipFile(io.BytesIO(spec.code_zip)) as archive:
                archive.extractall(code_dir)
        module_name, _, attribute = spec.handler.rpartition(".")
        shell = _LoadedFunction(spec, code_dir, {}, handler=lambda event, context: None)
        handlers_before = _all_log_handlers()
        with self._running(shell):  # leaves the freshly imported tree in shell.modules
            shell.handler = getattr(importlib.import_module(module_name), attribute)
        # Powertools' logger is named after the service ("spottrain"), the parent of the emulator's
        # own loggers: its handlers must only format what a handler logs.
        for handler in _all_log_handlers() - handlers_before:
            handler.addFilter(lambda record: _in_handler())
        self._loaded[spec.arn] = shell
        return shell

    @contextlib.contextmanager
    def _running(self, function: _LoadedFunction) -> Iterator[None]:
        """Swap in the function's packages, environment and log file; restore them afterwards."""
        saved_modules = _modules_under(ASSET_PACKAGES)
        for name in saved_modules:
            del sys.modules[name]
        sys.modules.update(function.modules)
        saved_attributes = _bind_packages(function.modules)
        finder = _AssetFinder(function.code_dir)
        sys.meta_path.insert(0, finder)
        saved_env = _set_environment(self._environment(function.spec))
        self._route_output()
        self._record_api_calls()
        _INVOKING.active = True
        _INVOKING.calls, _INVOKING.handler = self.calls, function.spec.handler
        try:
            yield
        finally:
            function.modules = _modules_under(ASSET_PACKAGES) or function.modules
            for name in function.modules:
                sys.modules.pop(name, None)
            sys.modules.update(saved_modules)
            sys.meta_path.remove(finder)
            _restore_attributes(saved_attributes)
            _set_environment(saved_env)
            _INVOKING.active = False
            _INVOKING.calls = None

    def _environment(self, spec: FunctionSpec) -> dict[str, str]:
        return {
            **self.base_env,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "_HANDLER": spec.handler,
            **spec.environment,
        }


def error_payload(exc: BaseException, error_type: str | None = None) -> dict:
    """The body Lambda returns for an unhandled exception; Step Functions names the error errorType."""
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc)[-5:],
    }


def _set_environment(values: Mapping[str, str | None]) -> dict[str, str | None]:
    """Set (None: unset) only the given variables, returning their previous values.

    Never clears os.environ: moto's executor threads read MOTO_PORT while a handler runs.
    """
    previous = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return previous


def _all_log_handlers() -> set[logging.Handler]:
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    return {handler for logger in loggers for handler in logger.handlers}


class _AssetFinder(importlib.abc.MetaPathFinder):
    """Finds the asset's packages in the function's unpacked code, and nowhere else.

    Their modules then follow the package's `__path__`, which lies in the asset too.
    """

    def __init__(self, code_dir: Path):
        self.package_dir = str(code_dir / "spottrain")

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in ASSET_PACKAGES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, [self.package_dir])
        if spec is None:
            raise ModuleNotFoundError(f"No module named {fullname!r} in the function's asset", name=fullname)
        return spec


_ABSENT = object()


def _bind_packages(modules: dict[str, Any]) -> dict[str, Any]:
    """Point `spottrain.contract`/`.functions` at the function's packages (or at nothing yet); returns the old values.

    `import spottrain.contract.layout as layout` reads the attribute, not sys.modules.
    """
    saved = {}
    for package in ASSET_PACKAGES:
        attribute = package.rpartition(".")[2]
        saved[attribute] = spottrain.__dict__.get(attribute, _ABSENT)
        if package in modules:
            setattr(spottrain, attribute, modules[package])
        elif attribute in spottrain.__dict__:
            delattr(spottrain, attribute)
    return saved


def _restore_attributes(saved: dict[str, Any]) -> None:
    for attribute, value in saved.items():
        if value is _ABSENT:
            spottrain.__dict__.pop(attribute, None)
        else:
            setattr(spottrain, attribute, value)


def _modules_under(packages: tuple[str, ...]) -> dict[str, Any]:
    return {
        name: module
        for name, module in list(sys.modules.items())
        if any(name == package or name.startswith(package + ".") for package in packages)
    }
