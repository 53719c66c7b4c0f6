"""Open a page in headless Chromium (Debian's `chromium`) and read what it rendered."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from canvas.core.errors import CanvasError

# Flags that keep Chromium off the network (the machine has none) and quiet.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise CanvasError("headless Chromium not found: install Debian's `chromium` package (make setup does)")


def _run(page: Path, *flags: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000", *flags,
             page.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip


def image_load_counts(page: Path) -> tuple[int, int]:
    """(images on the page, images that failed to load), as counted by the page's own check script."""
    dom = _run(page, "--dump-dom").stdout
    total = re.search(r'data-images-total="(\d+)"', dom)
    broken = re.search(r'data-images-broken="(\d+)"', dom)
    if not total or not broken:
        raise CanvasError(f"{page} did not finish loading in Chromium (no image counts in the DOM)")
    return int(total.group(1)), int(broken.group(1))


def screenshot(page: Path, out_png: Path, width: int = 1200, height: int = 3000) -> Path:
    _run(page, f"--screenshot={out_png.resolve()}", f"--window-size={width},{height}")
    return out_png
