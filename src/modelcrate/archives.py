"""Model archives shared by the registry and the marketplace packaging: reproducible packing and digests."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

CHUNK = 1024 * 1024


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def pack_directory(directory: Path, into: Path, replaced: dict[str, bytes] | None = None) -> Path:
    """``directory``'s files as a reproducible ``model.tar.gz`` (sorted names, no times or owners): the same
    model always has the same sha256. ``replaced`` maps top-level file names to the bytes packed in their place
    (added when the directory lacks them), leaving ``directory`` itself as it is."""
    replaced = replaced or {}
    target = into / "model.tar.gz"
    with (
        target.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        paths = {path.relative_to(directory).as_posix(): path for path in directory.rglob("*")}
        for name in sorted(paths.keys() | replaced.keys()):
            path = paths.get(name)
            if path is not None and "__pycache__" in path.parts:
                continue
            if name in replaced:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(replaced[name]), 0o644
                tar.addfile(info, io.BytesIO(replaced[name]))
                continue
            info = tar.gettarinfo(str(path), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_file():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return target
