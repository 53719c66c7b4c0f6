"""The rejection ledger's last step: every `duplicate_of` names a record that is kept in the end.

Each dedup stage names the survivor it compared against, but a survivor can be removed by a later stage:
an exact copy of X is rejected pointing at X, then X is a near duplicate of Y (point at Y instead), or X
fails the CLIP-score filter (no kept record shows that picture: `duplicate_of` becomes null and the
reason says what happened to X). Pointers only go forward in the stage order, so chains are short; each
hop is one CoGroupByKey, never a lookup table in memory, and only the first one sees every key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import apache_beam as beam

from canvas.curation.records import STAGES, Rejection

__all__ = ["MAX_HOPS", "ResolveDuplicateOf"]

# A pointer set at one dedup decision leads to a survivor of that decision; a long chain is a repeated key
# -> identical pixels (both exact dedup) -> pHash near dup -> semantic dup (within a cluster) -> semantic dup
# (the border pass, pointing at a survivor that visits a third cluster) -> its own border decision -> kept.
MAX_HOPS = 6
_KEPT = "kept"
_PENDING = "pending"
_FATE = "fate"


def _status(rejection: Rejection) -> Iterator[tuple[str, tuple[str, str | None]]]:
    """(key, (stage, duplicate_of)) for the record that owns `key`. A repeated-key rejection does not own
    its key (the first row with that key does), so it says nothing about it."""
    if rejection.duplicate_of != rejection.key:
        yield rejection.key, (rejection.stage, rejection.duplicate_of)


def _fate(statuses: list[tuple[str, str | None]]) -> tuple[str, str | None]:
    """One fate per key: kept wins (possible only when exact dedup is off and keys repeat); otherwise the
    earliest stage's decision, ties broken by the named survivor, so reruns give the same ledger."""
    if any(stage == _KEPT for stage, _ in statuses):
        return _KEPT, None
    return min(statuses, key=lambda s: (STAGES.index(s[0]), s[1] or ""))


class _Repoint(beam.DoFn):
    """For one survivor key: the rejections pointing at it, resolved one hop further."""

    def __init__(self, last_hop: bool, emit_fates: bool = False) -> None:
        self.last_hop = last_hop
        self.emit_fates = emit_fates

    def process(self, element: tuple[str, dict[str, list]]) -> Iterator:
        target, joined = element
        pointing: list[Rejection] = joined["pointing"]
        if not pointing:
            return
        statuses = joined["status"]
        stage, next_target = _fate(statuses) if statuses else ("missing", None)
        if self.emit_fates and statuses:  # later hops look up only keys that something points at
            yield beam.pvalue.TaggedOutput(_FATE, (target, (stage, next_target)))
        for rejection in pointing:
            if stage == _KEPT:
                yield rejection
            elif next_target is not None and not self.last_hop:
                note = f"; {target} is itself a duplicate of {next_target}"
                yield beam.pvalue.TaggedOutput(
                    _PENDING,
                    dataclasses.replace(rejection, duplicate_of=next_target, reason=rejection.reason + note),
                )
            else:
                note = (
                    f"; {target} was not kept either (removed at {stage})"
                    if statuses
                    else f"; {target} is not among the results"
                )
                yield dataclasses.replace(rejection, duplicate_of=None, reason=rejection.reason + note)


class ResolveDuplicateOf(beam.PTransform):
    """(kept Records, Rejections) -> the Rejections, each `duplicate_of` a kept key or null."""

    def expand(self, pcolls: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        kept, rejected = pcolls
        status = (
            kept | "KeptStatus" >> beam.Map(lambda r: (r.key, (_KEPT, None))),
            rejected | "RejectedStatus" >> beam.FlatMap(_status),
        ) | "Statuses" >> beam.Flatten()
        plain, pending = rejected | "SplitPointers" >> beam.Partition(
            lambda r, _: int(r.duplicate_of is not None), 2
        )
        done = [plain]
        # The first hop joins every record's fate (one shuffle of all keys) and keeps the fates of the
        # keys something points at; a chain's later hops only ever need those, so they stay small.
        for hop in range(MAX_HOPS):
            out = (
                {
                    "status": status,
                    "pointing": pending | f"ByTarget{hop}" >> beam.Map(lambda r: (r.duplicate_of, r)),
                }
                | f"Join{hop}" >> beam.CoGroupByKey()
                | f"Repoint{hop}"
                >> beam.ParDo(_Repoint(last_hop=hop == MAX_HOPS - 1, emit_fates=hop == 0)).with_outputs(
                    _PENDING, _FATE, main="done"
                )
            )
            done.append(out["done"])
            pending = out[_PENDING]
            if hop == 0:
                status = out[_FATE]
        return done | "Resolved" >> beam.Flatten()
