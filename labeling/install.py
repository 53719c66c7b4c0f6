"""Where Label Studio lives and how it starts fast: its executable (own virtualenv, made by `make setup`),
its version, the environment a server runs in, and the pre-migrated data-dir template.

A first start on an empty data dir runs ~30 s of Django migrations, so they run once into a *template*
(`<label-studio venv>/canvas-data-template`, built by `make setup` or lazily) that each new data dir copies.
The template holds no user, no organization and no secret key: each data dir gets its own at first start.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

from canvas.core.atomic import replace_path
from canvas.core.errors import CanvasError

logger = logging.getLogger(__name__)

LS_BIN_ENV = "CANVAS_LABEL_STUDIO_BIN"
TEMPLATE_ENV = "CANVAS_LABEL_STUDIO_TEMPLATE"
FILES_DIR = "local-files"
DB_FILE = "label_studio.sqlite3"
TEMPLATE_MARKER = "canvas-template.json"

# Quiet, offline, loopback-only (names from the server's settings code; see shared/labelstudio.md).
_BASE_ENV = {
    "DJANGO_DB": "sqlite",
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
    "COLLECT_ANALYTICS": "false",
    "LATEST_VERSION_CHECK": "false",
    "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
    "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
    "PYTHONUNBUFFERED": "1",  # the log names the port it really serves on; read it as it is written
}


def label_studio_bin() -> Path:
    """The `label-studio` executable: `$CANVAS_LABEL_STUDIO_BIN`, the repo's `.venv-labelstudio`, or PATH."""
    candidates = []
    if os.environ.get(LS_BIN_ENV):
        candidates.append(Path(os.environ[LS_BIN_ENV]))
    candidates.append(Path(__file__).resolve().parents[1] / ".venv-labelstudio" / "bin" / "label-studio")
    found = shutil.which("label-studio")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise CanvasError(
        "Label Studio is not installed: expected .venv-labelstudio/bin/label-studio (run `make setup`) "
        f"or set {LS_BIN_ENV}"
    )


def label_studio_version(binary: Path) -> str:
    """Version of the Label Studio beside `binary`, read from its dist-info (no import, no subprocess)."""
    venv = binary.resolve().parents[1]
    for info in sorted(venv.glob("lib/python*/site-packages/label_studio-*.dist-info")):
        return info.name.removeprefix("label_studio-").removesuffix(".dist-info")
    return "unknown"


def template_dir(binary: Path) -> Path:
    """The pre-migrated data-dir template: next to the installation that migrated it."""
    if os.environ.get(TEMPLATE_ENV):
        return Path(os.environ[TEMPLATE_ENV])
    return binary.resolve().parents[1] / "canvas-data-template"


def server_env(data_dir: Path, files_root: Path) -> dict[str, str]:
    """Our environment minus any LABEL_STUDIO_/DJANGO_ settings, plus the quiet offline ones and the dirs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.update(_BASE_ENV)
    env["LABEL_STUDIO_BASE_DATA_DIR"] = str(data_dir)
    env["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] = str(files_root)
    return env


def build_template(binary: Path | None = None, force: bool = False) -> Path:
    """Migrate an empty data dir once (~30 s) into the template; idempotent, safe across processes."""
    binary = binary or label_studio_bin()
    target = template_dir(binary)
    version = label_studio_version(binary)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".canvas-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions starting at once build it once
        marker = target / TEMPLATE_MARKER
        if not force and marker.exists() and json.loads(marker.read_text()).get("version") == version:
            return target
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        logger.info("migrating a Label Studio %s data-dir template once (~30 s) into %s", version, target)
        env = server_env(tmp, tmp / FILES_DIR)
        # `version` runs the migrations and exits; it creates no user and no organization.
        result = subprocess.run(
            [str(binary), "version"], env=env, capture_output=True, text=True, timeout=600, cwd=tmp.parent
        )
        if result.returncode != 0 or not (tmp / DB_FILE).exists():
            raise CanvasError(
                f"Label Studio migrations failed (exit {result.returncode}): {result.stderr[-500:]}"
            )
        (tmp / ".env").unlink(missing_ok=True)  # the secret key: each data dir makes its own
        (tmp / TEMPLATE_MARKER).write_text(json.dumps({"version": version}))
        replace_path(tmp, target)
    return target
