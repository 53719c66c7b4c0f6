"""`curation/` is engine-agnostic: importing every curation block must not import Apache Beam."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "canvas.curation.records",
    "canvas.curation.config",
    "canvas.curation.decode",
    "canvas.curation.filters",
    "canvas.curation.hashing",
    "canvas.curation.exact_dedup",
    "canvas.curation.near_dedup",
    "canvas.curation.embedding",
    "canvas.curation.nsfw",
    "canvas.curation.sources",
    "canvas.curation.report",
    "canvas.curation.semdedup",
]


def test_curation_blocks_do_not_import_beam() -> None:
    code = "import sys\n" + "".join(f"import {m}\n" for m in MODULES) + "print('apache_beam' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
