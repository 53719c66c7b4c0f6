"""A pipeline preset's build key: one hash of everything its weights depend on, stamped into its folder.

Presets are built, not downloaded: their weights are a function of the builder code, the sample photos
`tiny-photo` pretrains on and the library versions (a build fixes its own thread count; see
`canvas.core.presets.photo.BUILD_THREADS`). The stamp lets a built folder stand in for a fresh build
elsewhere only while that function is unchanged: `make setup` builds the presets once into `$CANVAS_HOME`
and a test session copies them into its fresh home (`copy_current_presets`) instead of building them again
(`tiny-photo`: 133 s on 2 idle cores, ~250 s beside the other test worker, 2026-12-04). A folder without the
stamp, or with another key, is never copied, and `canvas models init` builds it again.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import metadata, resources
from pathlib import Path

from canvas.core.atomic import write_text_atomic

BUILD_KEY_FILE = "canvas_build_key"
# The libraries whose numerics or file layout a build goes through.
LIBRARIES = ("torch", "diffusers", "transformers", "open_clip_torch", "numpy", "pillow", "scikit-image")


@functools.cache
def build_key() -> str:
    """sha256 of the preset package's files, the sample data module and its photos' bytes, and the
    versions of `LIBRARIES`."""
    from canvas.core import sample_data

    digest = hashlib.sha256()
    package = Path(__file__).parent
    sources = sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in [*sources, Path(sample_data.__file__)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for pkg, name, _, _ in sample_data.PHOTOS:
        digest.update(resources.files(pkg).joinpath(name).read_bytes())
    for library in LIBRARIES:
        try:
            version = metadata.version(library)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{library}=={version}\0".encode())
    return digest.hexdigest()


def stamp(folder: Path) -> None:
    """Record that `folder` holds a build made under the current key."""
    write_text_atomic(folder / BUILD_KEY_FILE, build_key() + "\n")


def is_current(folder: Path) -> bool:
    """True when `folder` was stamped under the current key."""
    try:
        return (folder / BUILD_KEY_FILE).read_text().strip() == build_key()
    except OSError:
        return False
