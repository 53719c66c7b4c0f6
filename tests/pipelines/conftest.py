"""Fixtures of the pipeline tests: a fake object store for Beam's FileSystems."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apache_beam.io.filesystem import BeamIOError, FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem


# Defined once here: Beam finds file systems by subclass and refuses two for one scheme.
class _ObjectStore(LocalFileSystem):
    """`canvastest://NAME` is ROOT/NAME, listed by prefix like an object store (no folders, no locks)."""

    root = ""

    @classmethod
    def scheme(cls) -> str:
        return "canvastest"

    def _local(self, path: str) -> str:
        return os.path.join(self.root, path.split("://", 1)[1])

    def has_dirs(self) -> bool:
        return False

    def _list(self, prefix: str) -> Iterator[FileMetadata]:
        for folder, _, files in os.walk(self.root):
            for name in files:
                path = "canvastest://" + os.path.relpath(os.path.join(folder, name), self.root)
                if path.startswith(prefix):
                    yield FileMetadata(path, 0, 0)

    def metadata(self, path: str) -> FileMetadata:
        return FileMetadata(path, 0, 0)

    def exists(self, path: str) -> bool:
        return os.path.exists(self._local(path))

    def create(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return super().create(self._local(path), *args, **kwargs)

    def open(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return super().open(self._local(path), *args, **kwargs)

    def rename(self, sources: list[str], destinations: list[str]) -> None:
        for source, destination in zip(sources, destinations, strict=True):
            os.makedirs(os.path.dirname(self._local(destination)), exist_ok=True)
            os.rename(self._local(source), self._local(destination))

    def delete(self, paths: list[str]) -> None:
        for path in paths:
            local = self._local(path)
            if not os.path.exists(local):
                raise BeamIOError("Delete operation failed", {path: "not found"})
            shutil.rmtree(local) if os.path.isdir(local) else os.remove(local)


@pytest.fixture
def object_store(tmp_path: Path) -> str:
    """The `canvastest://` prefix, its objects kept under `tmp_path` (`canvastest://b/x` is tmp_path/b/x)."""
    _ObjectStore.root = str(tmp_path)
    return "canvastest://"
