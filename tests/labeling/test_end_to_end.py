"""generate -> push -> annotate through the real API as different users -> pull: the numbers add up."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from canvas.cli import main
from canvas.labeling.client import LabelStudioClient
from canvas.labeling.pull import pull_preferences
from canvas.labeling.push import push_candidates
from canvas.labeling.schema import choice_result
from canvas.labeling.server import LabelStudioServer
from canvas.labeling.simulate import SimulatedAnnotator, simulate_annotations
from canvas.rlhf.rewards import EncodedImageScorer

pytestmark = pytest.mark.labelstudio


def _candidates(candidates: Path) -> list[dict]:
    return pq.read_table(candidates / "candidates.parquet").to_pylist()


def _task_ids(client: LabelStudioClient, title: str) -> dict[str, int]:
    project_id = client.find_project(title)
    return {data["pair_id"]: task_id for task_id, data in client.iter_task_data(project_id)}


def test_push_annotate_pull_gives_exactly_what_the_annotations_imply(
    ls_server: LabelStudioServer, ls_client: LabelStudioClient, candidates: Path, tmp_path: Path
) -> None:
    rows = _candidates(candidates)
    assert len(rows) == 4
    a, b, c, d = (r["pair_id"] for r in rows)
    gold_file = tmp_path / "gold.json"
    gold_file.write_text(json.dumps({d: "right"}))

    pushed = push_candidates(
        candidates, "e2e pairs", url=ls_server.url, overlap=2, gold=gold_file, data_dir=ls_server.data_dir
    )
    assert (pushed.created, pushed.existing, pushed.gold) == (4, 0, 1)
    project = ls_client.get_project(pushed.project_id)
    assert project["maximum_annotations"] == 2 and 'hotkey="3"' in project["label_config"]
    tasks = _task_ids(ls_client, "e2e pairs")
    assert set(tasks) == {a, b, c, d}

    u1 = ls_client.create_user("ann1@test.local", "ann1")
    u2 = ls_client.create_user("ann2@test.local", "ann2")
    u3 = ls_client.create_user("ann3@test.local", "ann3")
    plan = [  # (pair, user, choice, seconds)
        (a, u1, "left", 2.0), (a, u2, "left", 1.0),    # agreement
        (b, u1, "tie", 4.0), (b, u2, "tie", 1.0),      # an agreed tie
        (c, u1, "left", 6.0), (c, u2, "right", 3.0),   # a disagreement: no majority -> tie
        (d, u1, "right", 8.0), (d, u2, "left", 10.0),  # gold pair (answer: right)
    ]  # fmt: skip
    for pair, user, choice, seconds in plan:
        ls_client.create_annotation(tasks[pair], choice_result(choice), completed_by=user, lead_time=seconds)
    bad = ls_client.create_annotation(tasks[a], choice_result("both"), completed_by=u3, lead_time=1.0)

    out = tmp_path / "pull"
    result = pull_preferences("e2e pairs", out, url=ls_server.url, data_dir=ls_server.data_dir)
    # The gold answer is the task's meta, not an annotation: 9 = 8 kept + 1 rejected + 0 gold annotations.
    assert (result.annotations, result.kept, result.rejected, result.gold, result.gold_pairs) == (
        9,
        8,
        1,
        0,
        1,
    )

    table = pq.read_table(out / "preferences.parquet")
    assert table.column_names[:5] == ["caption", "jpg_0", "jpg_1", "label_0", "label_1"]
    got = {r["pair_id"]: r for r in table.to_pylist()}
    expected = {  # pair: (label_0, label_1, num_votes, agreement)
        a: (1.0, 0.0, 2, 1.0),
        b: (0.5, 0.5, 2, 1.0),
        c: (0.5, 0.5, 2, 0.5),
        d: (0.5, 0.5, 2, 0.5),
    }
    assert {
        p: (r["label_0"], r["label_1"], r["num_votes"], r["agreement"]) for p, r in got.items()
    } == expected
    by_pair = {r["pair_id"]: r for r in rows}
    for pair, row in got.items():
        assert row["caption"] == by_pair[pair]["prompt"]
        for i in (0, 1):  # JPEG (Pick-a-Pic's format) of the pushed picture
            got_image = Image.open(io.BytesIO(row[f"jpg_{i}"]))
            assert (
                got_image.format == "JPEG"
                and got_image.size == Image.open(io.BytesIO(by_pair[pair][f"image_{i}"])).size
            )
        assert row["annotator_ids"] == sorted([u1, u2])

    report = json.loads((out / "annotators.json").read_text())
    # Units (l,l) (t,t) (l,r) (r,l): o_ll=o_tt=o_lr=o_rl=2, n=8, n_l=4, n_r=n_t=2 -> 1 - 7*4/40.
    assert report["krippendorff_alpha_nominal"] == pytest.approx(0.3)
    ann1, ann2 = report["annotators"][str(u1)], report["annotators"][str(u2)]
    assert (ann1["count"], ann1["agreement_with_majority"], ann1["gold_accuracy"]) == (4, 0.5, 1.0)
    assert (ann2["count"], ann2["agreement_with_majority"], ann2["gold_accuracy"]) == (4, 0.5, 0.0)
    assert ann1["median_lead_time_s"] == 5.0 and ann2["median_lead_time_s"] == 2.0
    assert ann1["email"] == "ann1@test.local"
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert rejected == [
        {
            "annotation_id": bad,
            "annotator": u3,
            "pair_id": a,
            "reason": "unknown choice 'both' (expected one of left, right, tie)",
            "task_id": tasks[a],
        }
    ]

    # Pulling again writes the same files; a new annotation is picked up by the next pull.
    again = tmp_path / "pull-again"
    pull_preferences("e2e pairs", again, url=ls_server.url, data_dir=ls_server.data_dir)
    for name in ("preferences.parquet", "annotators.json", "rejected.jsonl"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    ls_client.create_annotation(tasks[c], choice_result("left"), completed_by=u3, lead_time=2.0)
    pull_preferences("e2e pairs", out, url=ls_server.url, data_dir=ls_server.data_dir)
    row_c = next(r for r in pq.read_table(out / "preferences.parquet").to_pylist() if r["pair_id"] == c)
    assert (row_c["label_0"], row_c["label_1"], row_c["num_votes"]) == (1.0, 0.0, 3)
    assert row_c["agreement"] == pytest.approx(2 / 3) and row_c["annotator_ids"] == sorted([u1, u2, u3])


def test_push_is_idempotent_by_pair_id(
    ls_server: LabelStudioServer, ls_client: LabelStudioClient, candidates: Path
) -> None:
    args = ["label", "push", "--candidates", str(candidates), "--project", "idempotent pairs"]
    args += ["--url", ls_server.url, "--data-dir", str(ls_server.data_dir), "--overlap", "3"]
    assert main(args) == 0
    assert main(args) == 0  # through the CLI, token and files root from the server's data dir
    assert len(_task_ids(ls_client, "idempotent pairs")) == 4
    again = push_candidates(
        candidates, "idempotent pairs", url=ls_server.url, data_dir=ls_server.data_dir, overlap=3
    )
    assert (again.created, again.existing) == (0, 4)
    assert len(_task_ids(ls_client, "idempotent pairs")) == 4


def test_prelabels_from_a_reward_pick_the_higher_scored_image(
    ls_server: LabelStudioServer, ls_client: LabelStudioClient, candidates: Path
) -> None:
    import io

    import numpy as np
    from PIL import Image

    pushed = push_candidates(
        candidates,
        "prelabel pairs",
        url=ls_server.url,
        data_dir=ls_server.data_dir,
        scorer=EncodedImageScorer("brightness"),
    )
    assert pushed.predictions == 4
    brightness = {}
    for row in _candidates(candidates):
        m0, m1 = (
            np.asarray(Image.open(io.BytesIO(row[k])).convert("RGB")).mean() for k in ("image_0", "image_1")
        )
        brightness[row["pair_id"]] = "left" if m0 > m1 else "right"
    predictions = ls_client.predictions(pushed.project_id)
    tasks = _task_ids(ls_client, "prelabel pairs")
    for pair_id, task_id in tasks.items():
        (prediction,) = predictions[task_id]
        assert prediction["result"] == choice_result(brightness[pair_id])
        assert 0.5 <= prediction["score"] <= 1.0 and prediction["model_version"] == "brightness"


def test_simulated_annotators_answer_from_their_oracle(
    ls_server: LabelStudioServer, ls_client: LabelStudioClient, candidates: Path, tmp_path: Path
) -> None:
    push_candidates(candidates, "simulated pairs", url=ls_server.url, data_dir=ls_server.data_dir, overlap=2)
    honest = SimulatedAnnotator("honest", reward="brightness", error_rate=0.0, seed=1)
    contrary = SimulatedAnnotator("contrary", reward="brightness", error_rate=1.0, seed=2)
    votes = simulate_annotations(
        ls_client, "simulated pairs", [honest, contrary], EncodedImageScorer, files_root=ls_server.files_root
    )
    assert len(votes) == 8  # 4 pairs x overlap 2, by two distinct users each
    assert {(v.pair_id, v.annotator) for v in votes} == {
        (p, n) for p in {v.pair_id for v in votes} for n in ("honest", "contrary")
    }
    assert all(v.choice == v.oracle for v in votes if v.annotator == "honest")
    assert all(v.choice != v.oracle for v in votes if v.annotator == "contrary")
    assert (
        simulate_annotations(
            ls_client,
            "simulated pairs",
            [honest, contrary],
            EncodedImageScorer,
            files_root=ls_server.files_root,
        )
        == []
    )

    result = pull_preferences("simulated pairs", tmp_path, url=ls_server.url, data_dir=ls_server.data_dir)
    assert result.kept == 8 and result.rejected == 0
    report = json.loads((tmp_path / "annotators.json").read_text())
    by_email = {r["email"]: r for r in report["annotators"].values()}
    # The two always disagree, so every pair is a split vote: neither agrees with a majority.
    assert by_email[honest.email]["agreement_with_majority"] == 0.0
    assert report["krippendorff_alpha_nominal"] < 0
