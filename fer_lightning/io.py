"""Atomic writes: a reader never sees a half-written file or directory; strict JSON."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``target``; rename it over ``target`` only on success.

    On an exception the temp file is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp directory beside ``target``; on success it replaces ``target``.

    An existing ``target`` is moved aside first and deleted after the rename, so readers
    see the old directory or the new one, never a mix; on an exception the temp
    directory is deleted and ``target`` is left as it was. The new directory keeps the
    mode of the one it replaces (else the usual ``0777 & ~umask``), not mkdtemp's 0700.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = target.stat().st_mode & 0o7777 if target.is_dir() else 0o777 & ~_umask()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, mode)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=tmp.parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_csv(target: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Rows (mappings with the first row's keys) as a CSV with a header, atomically."""
    with atomic_path(target) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return Path(target)


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    return value


def write_json(target: str | os.PathLike, obj: Any) -> None:
    """Strict JSON, atomically: NaN and infinities become ``null`` (jq and browsers reject NaN)."""
    atomic_write_text(target, json.dumps(_no_nan(obj), indent=2, allow_nan=False) + "\n")


def number(value: Any) -> float:
    """A JSON number back as float: ``null`` (an undefined value) is NaN."""
    return math.nan if value is None else float(value)
