"""The Pick-a-Pic v2 row format of `preferences.parquet`: its columns, types and how each is derived.

Pick-a-Pic v2 has one row per ranking (one user judging one pair); our row is one pair with the
majority of its votes. Its per-ranking columns therefore describe one representative vote: the first
kept vote (lowest annotation id) that chose the row's label, or, when the label is a tie because the
votes split, the first kept vote. Tools built for Pick-a-Pic (diffusers' DPO script, PickScore's
training code) read `caption, jpg_0, jpg_1, label_0, label_1` and filter on `has_label` /
`are_different`; our own columns (`pair_id`, vote counts, ...) follow theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from canvas.core.formats.preferences import as_jpeg, image_uid
from canvas.labeling.quality import Vote
from canvas.labeling.schema import LABELS


def parse_created_at(value: Any) -> datetime | None:
    """Label Studio's ISO time (`2026-01-02T03:04:05.123456Z`) as a naive UTC datetime."""
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def representative(votes: Sequence[Vote], label: str) -> Vote:
    """The vote whose user, id and time stand for the row (see the module docstring)."""
    ordered = sorted(votes, key=lambda v: v.annotation_id)
    return next((v for v in ordered if v.choice == label), ordered[0])


def pickapic_columns(
    label: str,
    votes: Sequence[Vote],
    images: tuple[bytes, bytes],
    urls: tuple[str, str],
    model: str,
    created_at: dict[int, datetime | None],
) -> dict[str, Any]:
    """The Pick-a-Pic columns of one pair's row (images are the bytes as the server holds them)."""
    uid_0, uid_1 = image_uid(images[0]), image_uid(images[1])
    vote = representative(votes, label)
    return {
        "jpg_0": as_jpeg(images[0]),
        "jpg_1": as_jpeg(images[1]),
        "label_0": LABELS[label][0],
        "label_1": LABELS[label][1],
        "best_image_uid": {"left": uid_0, "right": uid_1}.get(label, ""),
        "image_0_uid": uid_0,
        "image_1_uid": uid_1,
        "image_0_url": urls[0],
        "image_1_url": urls[1],
        "model_0": model,
        "model_1": model,
        "has_label": True,
        "are_different": uid_0 != uid_1,
        "ranking_id": vote.annotation_id,
        "user_id": vote.annotator,
        "created_at": created_at.get(vote.annotation_id),
    }
