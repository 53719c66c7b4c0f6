"""`canvas label pull`'s output, `preferences.parquet`: Pick-a-Pic v2's columns with its types, then ours.

Readers (the reward trainer, Diffusion-DPO, diffusers' DPO script, PickScore's code) need only
`REQUIRED_COLUMNS`; a tie is label_0 = label_1 = 0.5. How labeling derives each column from Label Studio's
votes is in `canvas/labeling/pickapic.py`; how training reads them in `canvas/rlhf/preferences.py`.
"""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa

__all__ = ["IMAGE_COLUMNS", "JPEG_QUALITY", "PREFERENCES_SCHEMA", "REQUIRED_COLUMNS", "as_jpeg", "image_uid"]

REQUIRED_COLUMNS: tuple[str, ...] = ("caption", "jpg_0", "jpg_1", "label_0", "label_1")
IMAGE_COLUMNS: tuple[str, ...] = ("jpg_0", "jpg_1")

PREFERENCES_SCHEMA = pa.schema(
    [
        ("caption", pa.string()),
        ("jpg_0", pa.binary()),
        ("jpg_1", pa.binary()),
        ("label_0", pa.float64()),
        ("label_1", pa.float64()),
        # Pick-a-Pic v2's other columns, with its types.
        ("best_image_uid", pa.string()),
        ("image_0_uid", pa.string()),
        ("image_1_uid", pa.string()),
        ("image_0_url", pa.string()),
        ("image_1_url", pa.string()),
        ("model_0", pa.string()),
        ("model_1", pa.string()),
        ("has_label", pa.bool_()),
        ("are_different", pa.bool_()),
        ("ranking_id", pa.int64()),
        ("user_id", pa.int64()),
        ("created_at", pa.timestamp("ns")),
        ("num_example_per_prompt", pa.int64()),
        # Ours.
        ("pair_id", pa.string()),
        ("num_votes", pa.int64()),
        ("agreement", pa.float64()),
        ("annotator_ids", pa.list_(pa.int64())),
        ("votes_left", pa.int64()),
        ("votes_right", pa.int64()),
        ("votes_tie", pa.int64()),
    ]
)
JPEG_QUALITY = 95


def as_jpeg(data: bytes) -> bytes:
    """JPEG bytes of an encoded image: JPEG input is kept byte for byte, anything else re-encoded (q95, 4:4:4).

    Pick-a-Pic's `jpg_*` columns hold JPEG; a transparent image is flattened on white first.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG":
            return data
        if image.mode in ("RGBA", "LA", "P", "PA"):
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
        else:
            flat = image.convert("RGB")
    out = io.BytesIO()
    flat.save(out, format="JPEG", quality=JPEG_QUALITY, subsampling=0)  # 4:4:4: no colour bleed
    return out.getvalue()


def image_uid(data: bytes) -> str:
    """A content id (sha256 of the bytes the server holds, 32 hex digits): equal images, equal uid."""
    return hashlib.sha256(data).hexdigest()[:32]
