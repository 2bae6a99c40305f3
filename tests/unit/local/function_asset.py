"""A function's code asset as the stack ships it: the `spottrain` package holding one task module."""

from __future__ import annotations

import io
import zipfile

from spottrain.local.lambda_host import FunctionSpec


def handler_name(task: str) -> str:
    return f"spottrain.functions.{task}.handler"


def function_zip(task: str, source: str, more: dict[str, str] | None = None) -> bytes:
    """The asset with `task`'s module, plus `more` (name in the zip -> text)."""
    files = {
        "spottrain/__init__.py": "",
        "spottrain/functions/__init__.py": "",
        f"spottrain/functions/{task}.py": source,
        **(more or {}),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def task_spec(
    name: str, source: str, more: dict[str, str] | None = None, code_sha: str = "v1", environment: dict | None = None
) -> FunctionSpec:
    """A deployed function `name` whose asset holds the `task` module with `source` (and `more`)."""
    return FunctionSpec(
        name=name,
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        handler=handler_name("task"),
        code_sha=code_sha,
        code_zip=function_zip("task", source, more),
        environment=environment or {},
        timeout=30,
    )
