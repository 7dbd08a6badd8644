"""Progress bars for long sweeps: a live bar in a kernel, none in a stored run (COURSE_STATIC set)."""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = ["progress"]

STATIC_ENV = "COURSE_STATIC"


def progress(items: Iterable, desc: str) -> Iterable:
    """Return the items with a progress bar in a live kernel; plain in a stored run, where a bar stays frozen at 0%."""
    if os.environ.get(STATIC_ENV):
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc)
