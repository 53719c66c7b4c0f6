"""Simulated annotators: Label Studio users whose judgements come from a known, noisy preference.

Each simulated annotator is a real user on the server. Its annotations go through the real API, with
`completed_by` set to that user (the admin token writes them: Label Studio's API gives no token for
another user). Its preference is an oracle reward (e.g. `brightness`, scored by the caller's `scorer_for`): it picks the
image the reward scores higher, `tie` when the scores are within `tie_margin`, and with probability
`error_rate` one of the two other answers instead. Everything is seeded, so a run is reproducible.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canvas.core.errors import CanvasError
from canvas.labeling.client import LabelStudioClient, connect
from canvas.labeling.pull import read_task_image
from canvas.labeling.schema import CHOICES, ImageScorer, choice_result, parse_choice

logger = logging.getLogger(__name__)

SIMULATED_DOMAIN = "simulated.canvas.local"


@dataclass(frozen=True)
class SimulatedAnnotator:
    """One simulated annotator: a Label Studio user with a known, noisy preference."""

    name: str = field(metadata={"help": "user name; the user's email is NAME@simulated.canvas.local"})
    reward: str = field(
        default="brightness",
        metadata={"help": "oracle reward name, scored by the `scorer_for` given to simulate_annotations"},
    )
    error_rate: float = field(default=0.1, metadata={"help": "probability of answering something else"})
    seed: int = field(default=0, metadata={"help": "seed of this annotator's noise"})
    tie_margin: float = field(default=0.0, metadata={"help": "|r0 - r1| at or below this is a tie"})
    mean_lead_time: float = field(default=4.0, metadata={"help": "mean seconds per judgement (recorded)"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise CanvasError(f"error_rate of {self.name!r} must lie in [0, 1], got {self.error_rate}")

    @property
    def email(self) -> str:
        return f"{self.name}@{SIMULATED_DOMAIN}"

    def oracle(self, r0: float, r1: float) -> str:
        if abs(r0 - r1) <= self.tie_margin:
            return "tie"
        return "left" if r0 > r1 else "right"

    def judge(self, pair_id: str, r0: float, r1: float) -> tuple[str, float]:
        """(choice, lead time) for one pair; deterministic in (seed, name, pair_id)."""
        rng = random.Random(f"{self.seed}:{self.name}:{pair_id}")
        choice = self.oracle(r0, r1)
        if rng.random() < self.error_rate:
            choice = rng.choice([c for c in CHOICES if c != choice])
        return choice, round(self.mean_lead_time * rng.uniform(0.5, 1.5), 3)


@dataclass
class SimulatedVote:
    pair_id: str
    task_id: int
    annotator: str
    user_id: int
    choice: str
    oracle: str


def ensure_users(client: LabelStudioClient, annotators: list[SimulatedAnnotator]) -> dict[str, int]:
    """User id per annotator name, creating the users that do not exist yet."""
    known = client.user_ids_by_email()
    ids = {}
    for annotator in annotators:
        ids[annotator.name] = known.get(annotator.email) or client.create_user(
            annotator.email, annotator.name
        )
    return ids


def _score_pairs(
    client: LabelStudioClient, files_root: Path | None, tasks: list[dict[str, Any]], scorer: ImageScorer
) -> dict[str, tuple[float, float]]:
    cache: dict[str, bytes] = {}
    scores = {}
    for task in tasks:
        data = task["data"]
        images = [read_task_image(client, files_root, data[key], cache) for key in ("image_0", "image_1")]
        r0, r1 = scorer(images, [data.get("prompt", "")] * 2)
        scores[str(data["pair_id"])] = (float(r0), float(r1))
    return scores


def simulate_annotations(
    client_or_url: LabelStudioClient | str | None,
    project: str,
    annotators: list[SimulatedAnnotator],
    scorer_for: Callable[[str], ImageScorer],
    overlap: int | None = None,
    token: str | None = None,
    data_dir: Path | None = None,
    files_root: Path | None = None,
    limit: int | None = None,
) -> list[SimulatedVote]:
    """Annotate the project's pairs as the simulated annotators; returns the votes written.

    Each pair gets `overlap` judgements (default: the project's overlap) from distinct annotators,
    assigned round-robin in task order. Pairs an annotator already judged are skipped, so a second run
    only fills what is missing. Gold (ground-truth) annotations do not count towards the overlap.
    `scorer_for(name)` gives the scorer of an annotator's oracle reward, e.g.
    `canvas.rlhf.rewards.EncodedImageScorer`.
    """
    if not annotators:
        raise CanvasError("no simulated annotators given")
    if len({a.name for a in annotators}) != len(annotators):
        raise CanvasError("simulated annotator names must be distinct")
    if isinstance(client_or_url, LabelStudioClient):
        client, server_root = client_or_url, None
    else:
        client, server_root = connect(client_or_url, token, data_dir)
    files_root = files_root or server_root
    project_id = client.find_project(project)
    if project_id is None:
        raise CanvasError(f"no project titled {project!r} on {client.url}")
    k = overlap or client.get_project(project_id)["maximum_annotations"] or 1
    if k > len(annotators):
        raise CanvasError(f"overlap {k} needs at least {k} simulated annotators, got {len(annotators)}")
    user_ids = ensure_users(client, annotators)
    tasks = sorted(
        (t for t in client.export_tasks(project_id) if (t.get("data") or {}).get("pair_id")),
        key=lambda t: int(t["id"]),
    )[:limit]
    scores_by_reward = {
        r: _score_pairs(client, files_root, tasks, scorer_for(r))
        for r in sorted({a.reward for a in annotators})
    }

    votes = []
    for index, task in enumerate(tasks):
        pair_id = str(task["data"]["pair_id"])
        done = {
            int(a["completed_by"])
            for a in task.get("annotations") or []
            if not a.get("ground_truth") and parse_choice(a.get("result"))[0] is not None
        }
        for j in range(k):
            annotator = annotators[(index + j) % len(annotators)]
            user_id = user_ids[annotator.name]
            if user_id in done:
                continue
            r0, r1 = scores_by_reward[annotator.reward][pair_id]
            choice, lead_time = annotator.judge(pair_id, r0, r1)
            client.create_annotation(
                int(task["id"]), choice_result(choice), completed_by=user_id, lead_time=lead_time
            )
            votes.append(
                SimulatedVote(
                    pair_id, int(task["id"]), annotator.name, user_id, choice, annotator.oracle(r0, r1)
                )
            )
    logger.info(
        "simulated %d annotations on %d pairs by %d annotators", len(votes), len(tasks), len(annotators)
    )
    return votes
