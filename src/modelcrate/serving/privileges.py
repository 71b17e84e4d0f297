"""Start as root, answer as nobody: the privilege model of ``serve``.

SageMaker (and its SDK's local mode) starts containers as root and mounts the model root-only (directories
0700, files 0600). So the supervisor stays root, each worker loads the model while still root, then drops to an
unprivileged user for good (no groups, setgid, setuid, no_new_privs) before it accepts a connection. Started
as any other uid, nothing is dropped and the model must be readable by that uid.

Imports nothing heavy: the supervisor uses it.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from modelcrate.errors import StartupError
from modelcrate.serving.errors import ConfigError

SERVE_USER_VARIABLE = "MODELCRATE_SERVE_USER"
DEFAULT_SERVE_USER = "model"  # the user the generated Dockerfile creates (uid 1000)
NOBODY = 65534  # when the image has no `model` user and no `nobody` entry
PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 38, 39  # <linux/prctl.h>


@dataclass(frozen=True)
class ServingUser:
    """Who the workers answer as after loading."""

    uid: int
    gid: int

    def __str__(self) -> str:
        return f"uid {self.uid}"


def serving_user(spec: str | None) -> ServingUser:
    """``MODELCRATE_SERVE_USER`` (a user name, ``uid`` or ``uid:gid``), else the image's `model` user, else
    nobody. Never root: a worker that kept uid or gid 0 could read and change anything in the container."""
    if spec is None or not spec.strip():
        for name in (DEFAULT_SERVE_USER, "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return ServingUser(entry.pw_uid, entry.pw_gid)
        return ServingUser(NOBODY, NOBODY)
    spec = spec.strip()
    uid_text, _, gid_text = spec.partition(":")
    if uid_text.isdigit() and (not gid_text or gid_text.isdigit()):
        uid = int(uid_text)
        try:
            default_gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            default_gid = uid
        user = ServingUser(uid, int(gid_text) if gid_text else default_gid)
    else:
        try:
            entry = pwd.getpwnam(spec)
        except KeyError:
            raise ConfigError(
                f"{SERVE_USER_VARIABLE}={spec}: no such user in /etc/passwd; give a user name, a uid or uid:gid"
            ) from None
        user = ServingUser(entry.pw_uid, entry.pw_gid)
    if user.uid == 0 or user.gid == 0:
        raise ConfigError(
            f"{SERVE_USER_VARIABLE}={spec} is root (uid {user.uid}, gid {user.gid}): requests are never answered as "
            "root; name an unprivileged user, or leave it unset for the image's `model` user"
        )
    return user


def _prctl(option: int, value: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def drop_privileges(user: ServingUser) -> None:
    """Become ``user`` irrevocably, or raise StartupError: a worker that cannot drop must not serve."""
    try:
        os.setgroups([])
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        raise StartupError(
            f"cannot drop root to {user} before serving ({exc.strerror}); the container needs the SETUID and "
            "SETGID capabilities (Docker's default), or start it as a non-root user with readable model files"
        ) from None
    _verify_dropped(user)


def _verify_dropped(user: ServingUser) -> None:
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise StartupError(f"dropped to {user}, yet setuid(0) succeeded; refusing to serve")
    capabilities = {
        name: int(value, 16)
        for name, value in (line.split(":\t") for line in Path("/proc/self/status").read_text().splitlines())
        if name in ("CapPrm", "CapEff")
    }
    if (
        os.getresuid() != (user.uid,) * 3
        or os.getresgid() != (user.gid,) * 3
        or os.getgroups()
        or any(capabilities.values())
        or _prctl(PR_GET_NO_NEW_PRIVS, 0) != 1
    ):
        raise StartupError(
            f"dropping root to {user} did not take (ids, groups or capabilities remain); refusing to serve"
        )


def first_unreadable(root: Path) -> Path | None:
    """The first path this process cannot read (or search) on the way to ``root`` or under it; None if all is
    readable or ``root`` does not exist (the model loader reports that)."""
    root = Path(os.path.abspath(root))
    for directory in reversed(root.parents):
        if not os.access(directory, os.X_OK):
            return directory
    if not os.path.exists(root):
        return None
    if not os.access(root, os.R_OK | (os.X_OK if root.is_dir() else 0)):
        return root
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories:
            if not os.access(os.path.join(directory, name), os.R_OK | os.X_OK):
                return Path(directory, name)
        for name in files:
            path = os.path.join(directory, name)
            if os.path.exists(path) and not os.access(path, os.R_OK):
                return Path(path)
    return None


def access_problem(path: Path, fix: str) -> str:
    """One line: what cannot be read, whose it is, its mode, who tried, and ``fix``."""
    info = os.stat(path)
    try:
        owner = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        owner = f"uid {info.st_uid}"
    return f"cannot read {path} (owner {owner}, mode {stat.S_IMODE(info.st_mode):04o}) as uid {os.getuid()}: {fix}"
