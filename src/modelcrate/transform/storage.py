"""Where a job's data lives: local paths, ``file://`` URIs or ``s3://`` (boto3), behind one small interface.

Outputs are written whole or not at all: locally to a hidden temporary file renamed into place, on S3 by one
``put_object`` (an object appears only once its upload completed).
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

PARTIAL_PREFIX = ".modelcrate-partial-"


class StorageError(RuntimeError):
    """Data could not be listed, read or written; the message names the location."""


@dataclass(frozen=True)
class InputObject:
    uri: str  # where to read it
    relative: str  # its path below the input prefix, mirrored under the output path
    size: int


def _s3_client():
    try:
        import boto3
    except ImportError:
        raise StorageError("s3:// locations need boto3: pip install 'modelcrate[transform]'") from None
    # AWS_ENDPOINT_URL (honoured by boto3 itself) points at S3-compatible servers such as MinIO or moto.
    return boto3.client("s3")


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise StorageError(f"{uri} names no bucket; write s3://BUCKET/KEY")
    return parsed.netloc, parsed.path.lstrip("/")


def local_path(uri: str) -> Path:
    if uri.startswith("file://"):
        return Path(unquote(urlparse(uri).path))
    return Path(uri)


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def _check_scheme(uri: str) -> None:
    scheme = urlparse(uri).scheme
    if scheme not in ("", "file", "s3") and not (len(scheme) == 1 and os.name == "nt"):
        raise StorageError(f"{uri}: unsupported location; use a local path, file:// or s3://")


def _directory_part(prefix: str) -> str:
    """Keys are mirrored relative to the prefix's folder: s3://b/in/part matches in/part-1.csv -> part-1.csv."""
    return prefix[: prefix.rfind("/") + 1]


def list_prefix(uri: str) -> list[InputObject]:
    """Every object whose location starts with ``uri`` (S3Prefix semantics), sorted by relative path."""
    _check_scheme(uri)
    if is_s3(uri):
        bucket, prefix = _split_s3(uri)
        client = _s3_client()
        objects = []
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                objects += [
                    InputObject(f"s3://{bucket}/{o['Key']}", o["Key"][len(_directory_part(prefix)) :], o["Size"])
                    for o in page.get("Contents", [])
                    if not o["Key"].endswith("/")
                ]
        except Exception as exc:
            raise StorageError(f"cannot list {uri}: {exc}") from None
        return sorted(objects, key=lambda o: o.relative)
    path = local_path(uri)
    if path.is_file():
        return [InputObject(str(path), path.name, path.stat().st_size)]
    if path.is_dir():
        root, files = path, sorted(p for p in path.rglob("*") if p.is_file())
    else:  # a string prefix of file names, as on S3
        root = path.parent
        candidates = root.rglob("*") if root.is_dir() else ()
        files = sorted(p for p in candidates if p.is_file() and str(p).startswith(str(path)))
    return [
        InputObject(str(p), p.relative_to(root).as_posix(), p.stat().st_size)
        for p in files
        if not p.name.startswith(PARTIAL_PREFIX)
    ]


def list_manifest(uri: str) -> list[InputObject]:
    """A ManifestFile: ``[{"prefix": "s3://bucket/p/"}, "rel/a", "rel/b"]``; outputs mirror the relative names."""
    try:
        manifest = json.loads(read_bytes(uri))
    except ValueError as exc:
        raise StorageError(f"manifest {uri} is not JSON: {exc}") from None
    if (
        not isinstance(manifest, list)
        or not manifest
        or not isinstance(manifest[0], dict)
        or not isinstance(manifest[0].get("prefix"), str)
        or not all(isinstance(item, str) and item for item in manifest[1:])
    ):
        raise StorageError(
            f'manifest {uri} must be a JSON list: [{{"prefix": "s3://bucket/folder/"}}, "relative/name", ...]'
        )
    prefix = manifest[0]["prefix"]
    objects = []
    for relative in manifest[1:]:
        location = prefix + relative
        objects.append(InputObject(location, relative, size_of(location)))
    return objects


def size_of(uri: str) -> int:
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        try:
            return _s3_client().head_object(Bucket=bucket, Key=key)["ContentLength"]
        except Exception as exc:
            raise StorageError(f"cannot read {uri}: {exc}") from None
    try:
        return local_path(uri).stat().st_size
    except OSError as exc:
        raise StorageError(f"cannot read {uri}: {exc.strerror}") from None


def read_bytes(uri: str, start: int | None = None, end: int | None = None) -> bytes:
    """The object's bytes, or the range [start, end) of them."""
    _check_scheme(uri)
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        extra = {"Range": f"bytes={start or 0}-{end - 1}"} if end is not None else {}
        try:
            return _s3_client().get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        except Exception as exc:
            raise StorageError(f"cannot read {uri}: {exc}") from None
    try:
        with local_path(uri).open("rb") as f:
            if start:
                f.seek(start)
            return f.read() if end is None else f.read(end - (start or 0))
    except OSError as exc:
        raise StorageError(f"cannot read {uri}: {exc.strerror}") from None


def decompress(data: bytes, compression: str, uri: str) -> bytes:
    if compression != "Gzip":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise StorageError(f"{uri} is not valid gzip (CompressionType=Gzip): {exc}") from None


def join(base: str, relative: str) -> str:
    return base.rstrip("/") + "/" + relative


def exists(uri: str) -> bool:
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        try:
            _s3_client().head_object(Bucket=bucket, Key=key)
            return True
        except Exception:
            return False
    return local_path(uri).is_file()


def write_atomically(uri: str, parts: list[bytes]) -> None:
    """Write the concatenated ``parts`` so that ``uri`` either does not exist or is complete."""
    _check_scheme(uri)
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        try:
            _s3_client().put_object(Bucket=bucket, Key=key, Body=b"".join(parts))
        except Exception as exc:
            raise StorageError(f"cannot write {uri}: {exc}") from None
        return
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=PARTIAL_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def remove_stale_partials(uri: str) -> int:
    """Temporary files a killed job left under a local output path (never mistaken for outputs)."""
    if is_s3(uri):
        return 0  # S3 never holds a partial object
    root = local_path(uri)
    stale = list(root.rglob(PARTIAL_PREFIX + "*")) if root.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
