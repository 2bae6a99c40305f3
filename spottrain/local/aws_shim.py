"""`aws` on a simulated instance: the `aws s3 cp` that the bootstrap and 2017-style data commands use.

    aws s3 cp s3://bucket/key FILE_OR_DIR        aws s3 cp FILE s3://bucket/key
    aws s3 cp s3://bucket/prefix/ DIR --recursive    aws s3 cp DIR s3://bucket/prefix/ --recursive

`install` writes this file as an executable whose interpreter is the emulator's Python (it has boto3);
it then talks to the emulator through AWS_ENDPOINT_URL like any AWS SDK. Stdlib and boto3 only: the
instance has nothing else of spottrain's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator, List, Tuple

QUIET_FLAGS = ("--only-show-errors", "--quiet", "--no-progress")
USAGE = "emulator aws shim: only 'aws s3 cp SRC DEST [--recursive]' with one side s3://bucket/key is available, got: "


def install(bin_dir: Path, python: str = sys.executable) -> Path:
    """Write `bin_dir/aws`, run by `python`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "aws"
    shim.write_text(f"#!{python}\n" + Path(__file__).read_text())
    shim.chmod(0o755)
    return shim


def main(argv: List[str]) -> int:
    quiet = any(flag in argv for flag in QUIET_FLAGS)
    recursive = "--recursive" in argv
    args = [arg for arg in argv if arg not in QUIET_FLAGS + ("--recursive",)]
    if args[:2] != ["s3", "cp"] or len(args) != 4 or args[2].startswith("s3://") == args[3].startswith("s3://"):
        print(USAGE + " ".join(argv), file=sys.stderr)
        return 2
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = boto3.client("s3")
    src, dest = args[2:]
    try:
        for verb, source, target in (_download if src.startswith("s3://") else _upload)(s3, src, dest, recursive):
            if not quiet:
                print(f"{verb}: {source} to {target}")
    except (BotoCoreError, ClientError, OSError) as error:
        print(f"fatal error: {error}", file=sys.stderr)
        return 1
    return 0


def _split(url: str) -> Tuple[str, str]:
    bucket, _, key = url[len("s3://") :].partition("/")
    return bucket, key


def _download(s3, src: str, dest: str, recursive: bool) -> Iterator[Tuple[str, str, str]]:
    bucket, key = _split(src)
    if not recursive:
        target = Path(dest)
        if dest.endswith("/") or target.is_dir():
            target = target / key.rsplit("/", 1)[-1]
        yield _fetch(s3, bucket, key, target)
        return
    prefix = key if not key or key.endswith("/") else key + "/"
    root = Path(dest).resolve()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :]
            if not relative or relative.endswith("/"):
                continue  # a console-made "folder" marker, not a file
            target = (root / relative).resolve()
            if root not in target.parents:
                raise OSError(f"s3://{bucket}/{item['Key']} would land outside {root}")
            yield _fetch(s3, bucket, item["Key"], target)


def _fetch(s3, bucket: str, key: str, target: Path) -> Tuple[str, str, str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, key, str(target))
    return "download", f"s3://{bucket}/{key}", str(target)


def _upload(s3, src: str, dest: str, recursive: bool) -> Iterator[Tuple[str, str, str]]:
    bucket, key = _split(dest)
    source = Path(src)
    if not recursive:
        if not key or key.endswith("/"):
            key += source.name
        s3.upload_file(str(source), bucket, key)
        yield "upload", str(source), f"s3://{bucket}/{key}"
        return
    prefix = key if not key or key.endswith("/") else key + "/"
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        object_key = prefix + path.relative_to(source).as_posix()
        s3.upload_file(str(path), bucket, object_key)
        yield "upload", str(path), f"s3://{bucket}/{object_key}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
