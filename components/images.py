"""The one rule for serving images: pinned to a release tag or a digest, never `latest`."""

from __future__ import annotations

import re
from typing import Optional

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def pinned_image_problem(image: str) -> Optional[str]:
    """Why ``image`` is not pinned to a release tag or a digest, or None when it is."""
    name, _, digest = (image or "").partition("@")
    if not name:
        return "is empty; give the serving image with a release tag or a digest"
    if digest:
        return None if _DIGEST.fullmatch(digest) else f"got {image!r}; a digest must be sha256: followed by 64 hex digits"
    last = name.rsplit("/", 1)[-1]  # a registry port (host:5000/...) is not a tag
    tag = last.partition(":")[2]
    if not tag:
        return f"got {image!r} without a tag; pin a release tag (e.g. :v0.32.0) or a digest (@sha256:...)"
    if tag == "latest":
        return f"got {image!r}; `latest` moves under you, pin a release tag or a digest"
    return None
