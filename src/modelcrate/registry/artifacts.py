"""Model artifacts (``model.tar.gz``) by content: stored once under their sha256, checked on every read.

The store is a local directory or ``s3://bucket/prefix``. An artifact is written whole or not at all (a
temporary file renamed into place; one S3 upload), under ``sha256/<digest>/model.tar.gz``.

Every temporary file of a registration (the packed model, a download, the copy being stored) lives in one staging
directory per registration, under ``.staging/`` in a local store (``<registry home>/staging`` for an S3 store),
named after its process: recovery removes those of dead processes, so a killed registration leaves nothing behind.
Earlier versions wrote the copy being stored next to its destination, as ``sha256/<digest>/.incoming-*``;
recovery removes those too, once no live claim covers the digest.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shutil
import socket
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelcrate.archives import CHUNK


class ArtifactError(RuntimeError):
    """An artifact could not be stored or read; the message names it."""


class ArtifactCorrupted(ArtifactError):
    """The bytes read are not the bytes registered."""


@dataclass(frozen=True)
class StoredArtifact:
    sha256: str
    uri: str
    size: int


def check_model_archive(path: Path, name: str) -> None:
    """Refuse anything but a gzip-compressed tar whose members all unpack inside the model directory (no ``..``,
    no links out, no devices), judged by the same filter extraction uses; the archive is read through once."""
    destination = path.parent / "model"
    try:
        with tarfile.open(path, mode="r:gz") as archive:
            for member in archive:
                try:
                    tarfile.data_filter(member, str(destination))
                except tarfile.SpecialFileError:
                    raise ArtifactError(f"{name}: member {member.name} is a device or pipe, not a file") from None
                except tarfile.FilterError:
                    raise ArtifactError(
                        f"{name}: member {member.name} would be written outside the model directory"
                    ) from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArtifactError(f"{name} is not a gzip-compressed tar archive (a model.tar.gz): {reason}") from None


def _s3():
    import boto3

    return boto3.client("s3")  # honours AWS_ENDPOINT_URL


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def local_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file://") else Path(uri)


def fetch_source(url: str, into: Path) -> Path:
    """A ModelDataUrl (a ``.tar.gz``, locally, ``file://`` or ``s3://``) as a local file; downloads go into
    ``into``."""
    if url.startswith("s3://"):
        bucket, key = _split_s3(url)
        target = into / "model.tar.gz"
        try:
            _s3().download_file(bucket, key, str(target))
        except Exception as exc:
            raise ArtifactError(f"cannot download {url}: {exc}") from None
        return target
    path = local_path(url)
    if not path.is_file():
        raise ArtifactError(f"ModelDataUrl {url}: no such file")
    return path


class ArtifactStore:
    def __init__(self, location: str):
        self.location = location.rstrip("/")
        self.is_s3 = self.location.startswith("s3://")
        if self.is_s3:
            from modelcrate.registry.db import registry_home

            self.staging_root = registry_home() / "staging"
        else:
            self.staging_root = Path(self.location) / ".staging"

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A directory of this process for one registration's temporary files, removed when the block ends.
        Inside a local store, so a staged file is renamed into place on the same filesystem."""
        self.staging_root.mkdir(parents=True, exist_ok=True)
        directory = Path(
            tempfile.mkdtemp(prefix=f"{os.getpid()}.", suffix=f".{socket.gethostname()}", dir=self.staging_root)
        )
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def recover_staging(self, alive: Callable[[str], bool]) -> int:
        """Remove the staging directories of processes that died (``alive`` takes ``host:pid``); returns how many."""
        if not self.staging_root.is_dir():
            return 0
        removed = 0
        for directory in self.staging_root.iterdir():
            pid, _, rest = directory.name.partition(".")
            host = rest.partition(".")[2]
            if pid.isdigit() and host and not alive(f"{host}:{pid}"):
                shutil.rmtree(directory, ignore_errors=True)
                removed += 1
        return removed

    def sweep_incoming(self, being_stored: set[str]) -> int:
        """Remove the ``.incoming-*`` copies that registrations of earlier versions, killed mid-write, left in
        ``sha256/<digest>/`` (the one place they were written); returns how many. Such a copy was only ever written
        by a process holding a claim on its digest, taken before and kept until after the write: one whose digest
        is not in ``being_stored`` (the digests of live claims, read under the claims lock, so no new writer can
        begin meanwhile) is written by nobody."""
        root = Path(self.location) / "sha256"
        if self.is_s3 or not root.is_dir():
            return 0
        removed = 0
        for leftover in root.glob("*/.incoming-*"):
            if leftover.parent.name not in being_stored:
                leftover.unlink(missing_ok=True)
                removed += 1
                with contextlib.suppress(OSError):  # the folder of its digest, when nothing was stored there
                    leftover.parent.rmdir()
        return removed

    def _uri(self, sha256: str) -> str:
        return f"{self.location}/sha256/{sha256}/model.tar.gz"

    def uri_for(self, sha256: str) -> str:
        return self._uri(sha256)

    def put(self, source: Path, sha256: str, staging: Path) -> StoredArtifact:
        """Store ``source`` (whose digest the caller computed) at its content address; a local copy is written
        in ``staging`` (a directory of :meth:`staging`) first."""
        uri, size = self._uri(sha256), source.stat().st_size
        if self.is_s3:
            bucket, key = _split_s3(uri)
            try:
                _s3().upload_file(str(source), bucket, key)
            except Exception as exc:
                raise ArtifactError(f"cannot store the artifact at {uri}: {exc}") from None
            return StoredArtifact(sha256, uri, size)
        target = Path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".incoming-", dir=staging)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as f:
                shutil.copyfileobj(f, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return StoredArtifact(sha256, uri, size)

    def read(self, uri: str, sha256: str) -> bytes:
        """The artifact's bytes, refused unless their sha256 is the one registered."""
        if self.is_s3 or uri.startswith("s3://"):
            bucket, key = _split_s3(uri)
            try:
                data = _s3().get_object(Bucket=bucket, Key=key)["Body"].read()
            except Exception as exc:
                raise ArtifactError(f"cannot read the artifact {uri}: {exc}") from None
        else:
            try:
                data = Path(uri).read_bytes()
            except OSError as exc:
                raise ArtifactError(f"cannot read the artifact {uri}: {exc.strerror}") from None
        found = hashlib.sha256(data).hexdigest()
        if found != sha256:
            raise ArtifactCorrupted(
                f"the artifact {uri} is corrupted: sha256 mismatch (registered {sha256}, read {found}); "
                "restore it from a backup or register the model again"
            )
        return data

    def unpack(self, uri: str, sha256: str, into: Path) -> Path:
        """Verify, then unpack into ``into`` (refusing members that would land outside it)."""
        data = self.read(uri, sha256)
        into.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                tar.extractall(into, filter="data")
        except tarfile.TarError as exc:
            raise ArtifactError(f"cannot unpack the artifact {uri}: {exc}") from None
        return into

    def delete(self, uri: str) -> None:
        if self.is_s3:
            bucket, key = _split_s3(uri)
            _s3().delete_object(Bucket=bucket, Key=key)
            return
        path = Path(uri)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the folder of its digest, when empty
            path.parent.rmdir()

    def stored(self) -> set[str]:
        """Every artifact URI in the store (for recovery checks and tests)."""
        if self.is_s3:
            bucket, prefix = _split_s3(self.location + "/sha256/")
            found = set()
            for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                found |= {f"s3://{bucket}/{o['Key']}" for o in page.get("Contents", [])}
            return found
        root = Path(self.location) / "sha256"
        return {str(p) for p in root.glob("*/model.tar.gz")} if root.is_dir() else set()
