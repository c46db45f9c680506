"""Writing files so that an interrupted run never leaves a torn one, and hashing them.

A file is written to a temporary name in its target directory, flushed to disk, and renamed over
the target (an atomic replace on POSIX): readers see the old file or the new one, never a part.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def write_atomically(target: Path | str, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` to produce the file, then move it over ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomically(target: Path | str, text: str) -> None:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    write_atomically(target, lambda p: p.write_text(text, encoding="utf-8"))


def sha256_file(path: Path | str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def replace_directory(src: Path, dst: Path) -> None:
    """Move the finished directory ``src`` to ``dst`` (same file system), replacing a stale ``dst``.

    Permissions are reset to the umask's defaults first: ``mkdtemp`` (and some writers) make things
    private."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(src, 0o777 & ~umask)
    for path in Path(src).rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o666 & ~umask)
    if Path(dst).exists():
        shutil.rmtree(dst)
    os.rename(src, dst)
