"""Pure aggregation: majority vote, Krippendorff's alpha, per-annotator report, result validation."""

from __future__ import annotations

import pytest

from canvas.labeling.pull import collect
from canvas.labeling.quality import Vote, annotator_report, krippendorff_alpha_nominal, majority
from canvas.labeling.schema import choice_result, parse_choice


@pytest.mark.parametrize(
    ("choices", "expected"),
    [
        (["left"], ("left", 1.0)),
        (["right", "right", "left"], ("right", 2 / 3)),
        (["tie", "tie"], ("tie", 1.0)),
        (["left", "right"], ("tie", 0.5)),  # no majority: the annotators could not tell them apart
        (["left", "tie", "right", "left"], ("left", 0.5)),
    ],
)
def test_majority(choices: list[str], expected: tuple[str, float]) -> None:
    assert majority(choices) == pytest.approx(expected)


def test_krippendorff_alpha_matches_krippendorffs_worked_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", nominal example: alpha = 0.743.
    coders = [
        "1 2 3 3 2 1 4 1 2 . . .",
        "1 2 3 3 2 2 4 1 2 5 . 3",
        ". 3 3 3 2 3 4 2 2 5 1 .",
        "1 2 3 3 2 4 4 1 2 5 1 .",
    ]
    units: dict[str, list[str]] = {}
    for coder in coders:
        for unit, value in enumerate(coder.split()):
            if value != ".":
                units.setdefault(str(unit), []).append(value)
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_edge_cases() -> None:
    assert krippendorff_alpha_nominal({"a": ["left", "left"], "b": ["right", "right"]}) == 1.0
    assert krippendorff_alpha_nominal({"a": ["left", "left"]}) is None  # one value: expected disagreement 0
    assert krippendorff_alpha_nominal({"a": ["left"], "b": ["right"]}) is None  # nothing pairable


def test_annotator_report() -> None:
    votes = [
        Vote("p1", 1, "left", 11, 2.0),
        Vote("p1", 2, "left", 12, 4.0),
        Vote("p2", 1, "right", 13, 6.0),
        Vote("p2", 2, "left", 14, None),
        Vote("p3", 1, "tie", 15, 1.0),  # judged once: not counted for agreement
    ]
    labels = {"p1": "left", "p2": "tie", "p3": "tie"}
    report = annotator_report(votes, labels, gold={"p2": "right"}, emails={1: "a@x"})
    assert report["1"] == {
        "email": "a@x",
        "count": 3,
        "shared_pairs": 2,
        "agreement_with_majority": 0.5,
        "gold_pairs": 1,
        "gold_accuracy": 1.0,
        "median_lead_time_s": 2.0,
    }
    assert report["2"]["gold_accuracy"] == 0.0 and report["2"]["median_lead_time_s"] == 4.0


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        ([], "empty result"),
        ([{"from_name": "other", "value": {"choices": ["left"]}}], "no 'preference' control"),
        (choice_result("left") + choice_result("right"), "2 'preference' results"),
        ([{"from_name": "preference", "value": {"choices": ["left", "right"]}}], "exactly one choice"),
        (choice_result("LEFT"), "unknown choice 'LEFT'"),
    ],
)
def test_malformed_results_are_named(result: list, reason: str) -> None:
    choice, why = parse_choice(result)
    assert choice is None and reason in why


def test_collect_accounts_for_every_annotation() -> None:
    def ann(i: int, user: int, result: list, **kw: object) -> dict:
        return {"id": i, "completed_by": user, "result": result, **kw}

    tasks = [
        {
            "id": 1,
            "data": {"pair_id": "p1"},
            "annotations": [
                ann(1, 7, choice_result("left")),
                ann(2, 7, choice_result("right")),  # the same annotator again: the later one counts
                ann(3, 8, [], was_cancelled=True),
                ann(4, 1, choice_result("tie"), ground_truth=True),
            ],
        },
        {"id": 2, "data": {}, "annotations": [ann(5, 7, choice_result("left"))]},
    ]
    out = collect(tasks)
    assert [(v.annotation_id, v.choice) for v in out.votes] == [(2, "right")]
    assert out.gold == {"p1": "tie"}
    reasons = {r["annotation_id"]: r["reason"] for r in out.rejected}
    assert reasons == {
        1: "superseded by a later annotation of the same annotator",
        3: "skipped by the annotator",
        5: "task has no pair_id (not pushed by canvas)",
    }
    assert out.annotations == len(out.votes) + len(out.rejected) + out.gold_annotations
