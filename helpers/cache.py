"""The course cache: converted and synthetic checkpoints, written atomically so a broken run leaves nothing half-done."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["cache_dir"]

CACHE_ENV = "COURSE_CACHE"


def cache_dir() -> Path:
    """Return the cache folder (COURSE_CACHE, else ~/.cache/efficient-inference-course), creating it."""
    folder = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "efficient-inference-course")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(f"the course cache {folder} cannot be created ({err.strerror}): set {CACHE_ENV} to a folder you "
                      "can write") from err
    return folder


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside target that becomes target only if the block completes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield staging
        if target.exists():  # another process finished first: keep its copy
            shutil.rmtree(staging)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
