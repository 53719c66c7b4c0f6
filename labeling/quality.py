"""Pure aggregation of preference votes: majority label, per-annotator quality, Krippendorff's alpha.

No server here: these functions take plain records, so the numbers can be checked by hand.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import permutations


@dataclass(frozen=True)
class Vote:
    """One kept judgement: `annotator` (a Label Studio user id) chose `choice` for `pair_id`."""

    pair_id: str
    annotator: int
    choice: str
    annotation_id: int
    lead_time: float | None = None


def majority(choices: Sequence[str]) -> tuple[str, float]:
    """`(label, agreement)`: the most chosen option, or `tie` when no option has a unique majority.

    Agreement is the share of votes for the most chosen option (1.0 = unanimous). A 1-1 split between
    left and right thus becomes a tie with agreement 0.5: the annotators could not tell the images apart.
    """
    if not choices:
        raise ValueError("no votes")
    counts = Counter(choices).most_common()
    top = counts[0][1]
    leaders = [c for c, n in counts if n == top]
    label = leaders[0] if len(leaders) == 1 else "tie"
    return label, top / len(choices)


def krippendorff_alpha_nominal(units: Mapping[str, Sequence[str]]) -> float | None:
    """Krippendorff's alpha for nominal data; units may have any number of ratings.

    Only units with at least two ratings are pairable. Returns None when alpha is undefined (fewer than
    two pairable ratings, or every rating the same value, so expected disagreement is zero).
    """
    coincidence: dict[tuple[str, str], float] = defaultdict(float)
    for values in units.values():
        m = len(values)
        if m < 2:
            continue
        for a, b in permutations(values, 2):
            coincidence[(a, b)] += 1.0 / (m - 1)
    totals: dict[str, float] = defaultdict(float)
    for (a, _), w in coincidence.items():
        totals[a] += w
    n = sum(totals.values())
    if n < 2:
        return None
    observed = sum(w for (a, b), w in coincidence.items() if a != b)
    expected = sum(totals[a] * totals[b] for a in totals for b in totals if a != b)
    if expected == 0:
        return None
    return 1.0 - (n - 1) * observed / expected


def annotator_report(
    votes: Iterable[Vote],
    labels: Mapping[str, str],
    gold: Mapping[str, str],
    emails: Mapping[int, str] | None = None,
) -> dict[str, dict]:
    """Per annotator: votes kept, agreement with the final label, accuracy on gold, median time.

    Agreement with the majority counts only pairs that more than one annotator judged (on a pair judged
    once, the annotator *is* the majority). A metric with nothing to measure is None.
    """
    votes = list(votes)
    voters_per_pair = Counter(v.pair_id for v in votes)
    by_annotator: dict[int, list[Vote]] = defaultdict(list)
    for vote in votes:
        by_annotator[vote.annotator].append(vote)
    report = {}
    for annotator, mine in sorted(by_annotator.items()):
        shared = [v for v in mine if voters_per_pair[v.pair_id] > 1]
        on_gold = [v for v in mine if v.pair_id in gold]
        times = [v.lead_time for v in mine if v.lead_time is not None]
        report[str(annotator)] = {
            "email": (emails or {}).get(annotator),
            "count": len(mine),
            "shared_pairs": len(shared),
            "agreement_with_majority": _share(v.choice == labels[v.pair_id] for v in shared),
            "gold_pairs": len(on_gold),
            "gold_accuracy": _share(v.choice == gold[v.pair_id] for v in on_gold),
            "median_lead_time_s": statistics.median(times) if times else None,
        }
    return report


def _share(flags: Iterable[bool]) -> float | None:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else None
