"""preferences.parquet carries Pick-a-Pic v2's columns and types, so tools built for it read it unchanged."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from canvas.core.formats.preferences import as_jpeg, image_uid
from canvas.labeling.client import LabelStudioClient
from canvas.labeling.pull import pull_preferences
from canvas.labeling.push import push_candidates
from canvas.labeling.schema import choice_result
from canvas.labeling.server import LabelStudioServer

PICKAPIC_V2_FEATURES = {  # the dataset card's features (yuvalkirstain/pickapic_v2)
    "caption": "string",
    "jpg_0": "binary",
    "jpg_1": "binary",
    "label_0": "float64",
    "label_1": "float64",
    "best_image_uid": "string",
    "image_0_uid": "string",
    "image_1_uid": "string",
    "image_0_url": "string",
    "image_1_url": "string",
    "model_0": "string",
    "model_1": "string",
    "has_label": "bool",
    "are_different": "bool",
    "ranking_id": "int64",
    "user_id": "int64",
    "created_at": "timestamp[ns]",
    "num_example_per_prompt": "int64",
}


def diffusers_dpo_preprocess(examples: dict) -> list[np.ndarray]:
    """diffusers' `train_diffusion_dpo.py` `preprocess_train`, minus its torchvision transforms: decode
    jpg_0/jpg_1 with PIL, stack them on the channel axis, the winner first (swapped when label_0 == 0)."""
    all_pixel_values = []
    for col_name in ["jpg_0", "jpg_1"]:
        images = [Image.open(io.BytesIO(im_bytes)).convert("RGB") for im_bytes in examples[col_name]]
        all_pixel_values.append([np.asarray(image, dtype=np.float32) / 255.0 for image in images])
    combined = []
    for im_tup, label_0 in zip(zip(*all_pixel_values, strict=True), examples["label_0"], strict=True):
        if label_0 == 0:
            im_tup = im_tup[::-1]
        combined.append(np.concatenate(im_tup, axis=-1))
    return combined


def test_jpeg_is_kept_and_png_is_reencoded() -> None:
    png, jpeg = io.BytesIO(), io.BytesIO()
    Image.new("RGBA", (8, 8), (10, 200, 30, 0)).save(png, format="PNG")
    Image.new("RGB", (8, 8), (10, 200, 30)).save(jpeg, format="JPEG")
    assert as_jpeg(jpeg.getvalue()) == jpeg.getvalue()
    converted = Image.open(io.BytesIO(as_jpeg(png.getvalue())))
    assert converted.format == "JPEG" and converted.getpixel((0, 0)) == pytest.approx((255, 255, 255), abs=3)


@pytest.mark.labelstudio
def test_pull_writes_pickapic_columns_that_datasets_and_the_dpo_preprocessing_read(
    ls_server: LabelStudioServer, ls_client: LabelStudioClient, candidates: Path, tmp_path: Path
) -> None:
    import datasets

    source = {r["pair_id"]: r for r in pq.read_table(candidates / "candidates.parquet").to_pylist()}
    a, b, c, _unlabeled = sorted(source)
    pushed = push_candidates(candidates, "pickapic pairs", url=ls_server.url, data_dir=ls_server.data_dir)
    tasks = {d["pair_id"]: t for t, d in ls_client.iter_task_data(pushed.project_id)}
    u1 = ls_client.create_user("pap1@test.local", "pap1")
    u2 = ls_client.create_user("pap2@test.local", "pap2")
    before = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=5)
    # a: u2 says right, then u1 left: a 1-1 split, so a tie whose ranking is the first vote (u2's).
    ls_client.create_annotation(tasks[a], choice_result("right"), completed_by=u2)
    first_left = ls_client.create_annotation(tasks[a], choice_result("left"), completed_by=u1)
    right_b = ls_client.create_annotation(tasks[b], choice_result("right"), completed_by=u1)
    ls_client.create_annotation(tasks[c], choice_result("left"), completed_by=u2)
    ls_client.create_annotation(tasks[c], choice_result("left"), completed_by=u1)
    after = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=5)

    out = tmp_path / "pull"
    pull_preferences("pickapic pairs", out, url=ls_server.url, data_dir=ls_server.data_dir)

    ds = datasets.load_dataset("parquet", data_files=str(out / "preferences.parquet"), split="train")
    features = {name: feature.dtype for name, feature in ds.features.items() if name in PICKAPIC_V2_FEATURES}
    assert features == PICKAPIC_V2_FEATURES
    assert ds.column_names[:5] == ["caption", "jpg_0", "jpg_1", "label_0", "label_1"]
    assert {"pair_id", "num_votes", "agreement", "annotator_ids"} <= set(ds.column_names)
    rows = {r["pair_id"]: r for r in ds}
    assert set(rows) == {a, b, c}
    for pair, row in rows.items():
        uid_0, uid_1 = image_uid(source[pair]["image_0"]), image_uid(source[pair]["image_1"])
        assert (row["image_0_uid"], row["image_1_uid"]) == (uid_0, uid_1)
        assert row["are_different"] is (uid_0 != uid_1) and row["has_label"] is True
        assert row["model_0"] == row["model_1"] == source[pair]["model"] != ""
        assert row["image_0_url"].startswith(ls_server.url + "/data/local-files/?d=")
        assert row["num_example_per_prompt"] == sum(r["caption"] == row["caption"] for r in rows.values())
        assert before <= row["created_at"] <= after
        for column in ("jpg_0", "jpg_1"):
            assert Image.open(io.BytesIO(row[column])).format == "JPEG"
    # A split vote is a tie: no best image; its ranking is the first vote (u2's).
    assert (rows[a]["label_0"], rows[a]["best_image_uid"], rows[a]["user_id"]) == (0.5, "", u2)
    assert rows[a]["ranking_id"] < first_left
    assert (rows[b]["best_image_uid"], rows[b]["user_id"], rows[b]["ranking_id"]) == (
        rows[b]["image_1_uid"],
        u1,
        right_b,
    )
    assert (rows[c]["best_image_uid"], rows[c]["user_id"]) == (rows[c]["image_0_uid"], u2)

    from canvas.rlhf.preferences import load_preferences  # our trainers read it too

    assert len(load_preferences(out / "preferences.parquet")) == 3

    # diffusers' DPO preprocessing: the winner comes first on the channel axis.
    batch = ds[:]
    stacked = diffusers_dpo_preprocess(batch)
    for pair_id, label_0, pixels in zip(batch["pair_id"], batch["label_0"], stacked, strict=True):
        order = ("image_0", "image_1") if label_0 != 0 else ("image_1", "image_0")
        winner, loser = (
            np.asarray(Image.open(io.BytesIO(source[pair_id][k])).convert("RGB"), dtype=np.float32) / 255.0
            for k in order
        )
        assert pixels.shape[-1] == 6
        # JPEG of the same picture: the first three channels are the winner's, the last three the loser's.
        assert np.abs(pixels[..., :3] - winner).mean() < np.abs(pixels[..., :3] - loser).mean()
        assert np.abs(pixels[..., 3:] - loser).mean() < np.abs(pixels[..., 3:] - winner).mean()
