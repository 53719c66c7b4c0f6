"""Pair images to a Label Studio on another host, through its own upload API.

Used when push cannot write into the server's local-files root (no `--files-root`, and the URL is not
the server `canvas label server start` runs here). Files go to `POST /api/projects/<id>/import
?commit_to_project=false`, which stores them in the server's media folder without making tasks; tasks
then reference `/data/upload/<images project>/<8 hex>-<name>`, served to the organization's logged-in
users and to the token (pull reads them back over HTTP).

Label Studio parses every uploaded image as a would-be task and refuses it when the project's config
has more than one data key (ours has prompt, image_0, image_1), so the files are uploaded to a
companion project, `canvas images for project <id>`, whose config has one image; it never gets tasks.
Idempotent: the project's uploads are listed first, and a file whose name and size are already there is
not sent again, so a push killed between upload and import re-uses what it uploaded.

Upload names are short and derived from the pair_id (`upload_name`): Label Studio keeps at most 100
characters of `upload/<project>/<8 hex>-<name>` and replaces a longer name with a truncated one plus a
random suffix, which could then never be matched again.
"""

from __future__ import annotations

import hashlib
import io
import logging
from typing import Any

from canvas.core.errors import CanvasError
from canvas.labeling.client import LabelStudioClient

logger = logging.getLogger(__name__)

EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}
FILES_PER_REQUEST = 100  # Label Studio's DATA_UPLOAD_MAX_NUMBER_FILES default


IMAGES_CONFIG = '<View><Image name="image" value="$image"/></View>'


def images_project_title(project_id: int) -> str:
    return f"canvas images for project {project_id}"  # under Label Studio's 50 characters


def upload_name(pair_id: str, index: int, data: bytes) -> str:
    """`<first 24 chars of the pair_id>.<16 hex of its sha256>_<index>.<ext>`: at most 49 characters, so
    `upload/<project id>/<8 hex>-<name>` stays well under Label Studio's 100 (its file name field), and
    one per pair_id (the hash tells apart pair_ids that share their first 24 characters)."""
    from PIL import Image

    digest = hashlib.sha256(pair_id.encode()).hexdigest()[:16]
    with Image.open(io.BytesIO(data)) as image:
        return f"{pair_id[:24]}.{digest}_{index}.{EXTENSIONS[image.format]}"


def _original_name(stored: str) -> str:
    """`upload/3/1a2b3c4d-p0_0.png` -> `p0_0.png` (Label Studio prefixes 8 hex digits and a dash)."""
    base = stored.rsplit("/", 1)[-1]
    return base.split("-", 1)[1] if "-" in base else base


class Uploader:
    """Uploads each pair's images once and gives their server URLs."""

    def __init__(self, client: LabelStudioClient, labeling_project_id: int) -> None:
        title = images_project_title(labeling_project_id)
        description = f"Images of the pairs of project {labeling_project_id} (canvas label push); no tasks."
        project_id, _ = client.find_or_create_project(title, IMAGES_CONFIG, 1, description=description)
        self.client, self.project_id = client, project_id
        self.known: dict[str, dict[str, Any]] = {}
        for f in sorted(client.file_uploads(project_id), key=lambda f: f["id"]):
            self.known.setdefault(_original_name(f["file"]), f)  # the first complete copy wins
        self.uploaded = 0

    def place(self, rows: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
        """`pair_id -> (url of image_0, url of image_1)`, uploading only the files not there yet."""
        names = {
            row["pair_id"]: tuple(upload_name(row["pair_id"], i, row[f"image_{i}"]) for i in (0, 1))
            for row in rows
        }
        missing = [
            (name, row[f"image_{i}"])
            for row in rows
            for i, name in enumerate(names[row["pair_id"]])
            if self.known.get(name, {}).get("size") != len(row[f"image_{i}"])
        ]
        for start in range(0, len(missing), FILES_PER_REQUEST):
            chunk = missing[start : start + FILES_PER_REQUEST]
            ids = self.client.upload_files(self.project_id, chunk)
            if len(ids) != len(chunk):
                raise CanvasError(f"Label Studio stored {len(ids)} of {len(chunk)} uploaded files")
            for f in self.client.file_uploads(self.project_id, ids):
                self.known[_original_name(f["file"])] = f
            self.uploaded += len(chunk)
        return {pair: (self.url(n0), self.url(n1)) for pair, (n0, n1) in names.items()}

    def url(self, name: str) -> str:
        if name not in self.known:
            raise CanvasError(f"Label Studio at {self.client.url} does not list the uploaded file {name}")
        return "/data/" + self.known[name]["file"]
