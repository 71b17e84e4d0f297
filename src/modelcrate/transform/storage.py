"""Where a job's data lives: local paths, ``file://`` URIs or ``s3://`` (boto3), behind one small interface.

Outputs are written whole or not at all: locally to a hidden temporary file renamed into place, on S3 by one
``put_object`` (an object appears only once its upload completed).

Names are untrusted: an object whose key or manifest entry leads outside the input prefix (``..``, an absolute
name, a symlink pointing out) is refused without being read, and no output is written outside the output path.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelcrate.serving.config import MAX_PAYLOAD_MB

PARTIAL_PREFIX = ".modelcrate-partial-"
MIB = 1024 * 1024
# A gzip object may decompress to this many times MaxPayloadInMB (100 MB when it is 0): legitimate CSV and JSON
# compress 3-20x, while a gzip bomb expands up to ~1000x.
GZIP_EXPANSION_LIMIT = 64
OUTSIDE_INPUT = "refused: its name leads outside the input prefix (an absolute name, '..' or a symlink)"


class StorageError(RuntimeError):
    """Data could not be listed, read or written; the message names the location."""


@dataclass(frozen=True)
class InputObject:
    uri: str  # where to read it
    relative: str  # its path below the input prefix, mirrored under the output path
    size: int
    refusal: str | None = None  # why it is not read: its name leads outside the input prefix


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


def _escapes(relative: str) -> bool:
    return relative.startswith("/") or "\0" in relative or ".." in relative.split("/")


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, its symlinks followed, lies under ``root`` (itself resolved)."""
    return path.resolve().is_relative_to(root.resolve())


def _refused(uri: str, relative: str) -> InputObject:
    return InputObject(uri, relative, 0, OUTSIDE_INPUT)


def list_prefix(uri: str) -> list[InputObject]:
    """Every object whose location starts with ``uri`` (S3Prefix semantics), sorted by relative path."""
    _check_scheme(uri)
    if is_s3(uri):
        bucket, prefix = _split_s3(uri)
        client = _s3_client()
        objects = []
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for o in page.get("Contents", []):
                    if o["Key"].endswith("/"):
                        continue
                    location, relative = f"s3://{bucket}/{o['Key']}", o["Key"][len(_directory_part(prefix)) :]
                    objects.append(
                        _refused(location, relative)
                        if _escapes(relative)
                        else InputObject(location, relative, o["Size"])
                    )
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
        if _inside(p, root)
        else _refused(str(p), p.relative_to(root).as_posix())
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
        escapes = _escapes(relative) or (
            not is_s3(prefix) and not _inside(local_path(location), local_path(_directory_part(prefix) or "."))
        )
        objects.append(_refused(location, relative) if escapes else InputObject(location, relative, size_of(location)))
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


def decompress(data: bytes, compression: str, uri: str, max_payload_mb: int) -> bytes:
    """The object's bytes, gunzipped (every member) when ``compression`` is Gzip; decompressing stops, and the
    object is refused, as soon as it passes GZIP_EXPANSION_LIMIT x MaxPayloadInMB (a gzip bomb)."""
    if compression != "Gzip":
        return data
    limit = GZIP_EXPANSION_LIMIT * (max_payload_mb or MAX_PAYLOAD_MB) * MIB
    chunks: list[bytes] = []
    size = 0
    remaining = data
    try:
        while remaining:
            member = zlib.decompressobj(wbits=31)
            pending = remaining
            while pending and not member.eof:
                chunk = member.decompress(pending, limit + 1 - size)
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise StorageError(
                        f"{uri} decompresses to more than {limit // MIB} MiB, {GZIP_EXPANSION_LIMIT} x MaxPayloadInMB "
                        "(CompressionType=Gzip); split it into smaller objects or raise MaxPayloadInMB"
                    )
                pending = member.unconsumed_tail
            if not member.eof:
                raise StorageError(f"{uri} is not valid gzip (CompressionType=Gzip): it ends in the middle of a member")
            remaining = member.unused_data.lstrip(b"\0")  # gzip allows zero padding after a member
    except zlib.error as exc:
        raise StorageError(f"{uri} is not valid gzip (CompressionType=Gzip): {exc}") from None
    return b"".join(chunks)


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


def output_location(base: str, relative: str) -> str:
    """Where the output for ``relative`` goes under ``base``; refused when it would land outside ``base``
    (a '..' in the name, or a symlink in a local output path that points elsewhere)."""
    location = join(base, relative)
    if _escapes(relative) or not (is_s3(base) or _inside(local_path(location).parent, local_path(base))):
        raise StorageError(f"refused: {relative} would be written outside the output path {base}")
    return location


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
