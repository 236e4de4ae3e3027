"""Turn an I/O failure anywhere in a job (driver or Beam worker) into one line: what went wrong,
on which path, and what to do. Runners wrap worker exceptions (the in-process runner chains them,
the multi-process one only keeps the text), so both the exception chain and the text are read."""

from __future__ import annotations

import errno
import os
import re

from appf.schemas import AppfError

_ADVICE = {
    errno.ENOSPC: "no space left on the device: free space or write to another --out",
    errno.EDQUOT: "disk quota exceeded: free space or write to another --out",
    errno.EROFS: "the file system is read-only: remount it read-write or use another --out",
    errno.EACCES: "permission denied: give this user write access or use another --out",
    errno.EPERM: "operation not permitted: give this user write access or use another --out",
    errno.EFBIG: "file too large for this file system or the process's limit (ulimit -f)",
    errno.EIO: "the device reported an I/O error: check the disk, then re-run",
}
_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\] ([^:'\n]*)(?:: '([^'\n]*)')?")

RESUME_NOTE = "committed shards are unchanged; re-run the same command to resume"


class OutputIOError(AppfError):
    """The job stopped on an I/O error; the message is one line."""


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _from_oserror(e: OSError) -> str | None:
    if e.errno not in _ADVICE:
        return None
    path = e.filename or "?"
    return f"{_ADVICE[e.errno]} ({errno.errorcode[e.errno]} on {path})"


def _from_text(text: str) -> str | None:
    m = _ERRNO_TEXT.search(text)
    if not m or int(m.group(1)) not in _ADVICE:
        return None
    code = int(m.group(1))
    return f"{_ADVICE[code]} ({errno.errorcode[code]} on {m.group(3) or '?'})"


def _botocore_attempts() -> int:
    """Attempts botocore makes per request before giving up (legacy mode default: 5)."""
    try:
        return int(os.environ.get("AWS_MAX_ATTEMPTS", "5"))
    except ValueError:
        return 5


def _from_object_store(e: BaseException) -> str | None:
    """Object-store client errors (botocore, under s3fs), matched by name: botocore is optional."""
    name, module = type(e).__name__, type(e).__module__
    if not module.startswith("botocore"):
        return None
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return ("no credentials for the object store: set AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), then re-run ({name})")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                "ConnectionClosedError"):
        return (f"network error: the object store did not answer after {_botocore_attempts()} "
                f"attempt(s) (AWS_MAX_ATTEMPTS): {e}; check AWS_ENDPOINT_URL and the network")
    return None


def describe_io_error(exc: BaseException) -> str | None:
    """One line for an I/O failure in `exc`'s chain or text, or None if it is not one."""
    for e in _chain(exc):
        if isinstance(e, OSError) and (line := _from_oserror(e)):
            return line
        if line := _from_object_store(e):
            return line
    for e in _chain(exc):
        if line := _from_text(str(e)):
            return line
    return None
