"""`curation/` is engine-agnostic: importing every curation block must not import Apache Beam."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "curation.records",
    "curation.config",
    "curation.decode",
    "curation.filters",
    "curation.hashing",
    "curation.exact_dedup",
    "curation.near_dedup",
    "curation.embedding",
    "curation.nsfw",
    "curation.sources",
    "curation.report",
    "curation.semdedup",
]


def test_curation_blocks_do_not_import_beam() -> None:
    code = "import sys\n" + "".join(f"import {m}\n" for m in MODULES) + "print('apache_beam' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
