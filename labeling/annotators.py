"""Annotators of a Label Studio server: add one (with a password it can log in with), list them, and a
project's progress per annotator (tasks done and remaining, agreement so far).
"""

from __future__ import annotations

import os
import re
import secrets
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canvas.core.errors import CanvasError
from canvas.labeling.client import LabelStudioClient
from canvas.labeling.config import StatusConfig
from canvas.labeling.pull import collect
from canvas.labeling.quality import annotator_report, krippendorff_alpha_nominal, majority

EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"


@dataclass
class AddedAnnotator:
    user_id: int
    email: str
    password: str | None  # None when it went to a file
    password_file: Path | None

    def describe(self) -> str:
        where = (
            f"password written to {self.password_file} (mode 0600)"
            if self.password_file
            else f"password (shown once, not stored): {self.password}"
        )
        return f"annotator {self.email} (user id {self.user_id}) can log in; {where}"


def add_annotator(client: LabelStudioClient, email: str, password_file: Path | None = None) -> AddedAnnotator:
    """Create a user that can log in, with a generated password printed once or written 0600 to a file.

    The file is created (exclusively, 0600) before the user, so a password is never lost: if the sign-up
    fails the file is removed again.
    """
    if not re.fullmatch(EMAIL, email):
        raise CanvasError(f"--email {email!r} is not an email address")
    if email.lower() in {u["email"].lower() for u in client.users()}:
        raise CanvasError(f"{email} is already a user of Label Studio at {client.url}")
    password = secrets.token_urlsafe(15)
    fd = None
    if password_file is not None:
        password_file = Path(password_file)
        try:
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise CanvasError(f"--password-file {password_file} exists: name a new file") from None
        except OSError as exc:
            raise CanvasError(f"cannot create --password-file {password_file}: {exc.strerror}") from exc
    try:
        client.sign_up(email, password)
    except BaseException:
        if fd is not None:
            os.close(fd)
            password_file.unlink(missing_ok=True)
        raise
    if fd is not None:
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
    user_id = next((u["id"] for u in client.users() if u["email"].lower() == email.lower()), None)
    if user_id is None:
        raise CanvasError(
            f"Label Studio at {client.url} accepted the sign-up of {email} but lists no such user"
        )
    return AddedAnnotator(user_id, email, None if fd is not None else password, password_file)


def describe_users(users: list[dict[str, Any]]) -> str:
    lines = [f"{'id':>5}  {'email':<32} {'joined':<20} last activity"]
    for u in sorted(users, key=lambda u: u["id"]):
        lines.append(f"{u['id']:>5}  {u['email']:<32} {u['date_joined'][:19]:<20} {u['last_activity'][:19]}")
    return "\n".join(lines)


@dataclass
class ProjectStatus:
    title: str
    project_id: int
    tasks: int
    overlap: int
    complete: int
    alpha: float | None
    annotators: list[dict[str, Any]]

    def describe(self) -> str:
        alpha = "undefined" if self.alpha is None else f"{self.alpha:.3f}"
        lines = [
            f"project {self.title!r} (id {self.project_id}): {self.tasks} tasks, overlap {self.overlap}; "
            f"{self.complete} complete, {self.tasks - self.complete} need more votes; "
            f"Krippendorff's alpha so far {alpha}",
            f"{'id':>5}  {'email':<32} {'done':>5} {'remaining':>9} {'agreement':>9} {'gold acc':>8}",
        ]
        for a in self.annotators:
            lines.append(
                f"{a['id']:>5}  {str(a['email']):<32} {a['done']:>5} {a['remaining']:>9} "
                f"{_pct(a['agreement_with_majority']):>9} {_pct(a['gold_accuracy']):>8}"
            )
        return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def project_status(client: LabelStudioClient, title: str) -> ProjectStatus:
    """Per annotator: tasks done, tasks still open to them, agreement with the majority so far.

    A task is done by an annotator who submitted (not skipped) a non-ground-truth annotation for it. It is
    open to an annotator who has neither done nor skipped it (Label Studio never serves a skipped task to
    the same person again) while it has fewer distinct annotators than the overlap (Label Studio hands
    such tasks out, so one may still go to someone else first). Annotations of deleted users are left
    out. Every user of the organization is listed, except the token's own user when it has done nothing
    (the admin that pushes; older versions made it hold the gold annotations).
    """
    title = StatusConfig(project=title).project  # stripped, as Label Studio stores it
    project_id = client.find_project(title)
    if project_id is None:
        raise CanvasError(f"no project titled {title!r} on {client.url}")
    overlap = int(client.get_project(project_id)["maximum_annotations"] or 1)
    tasks = client.export_tasks(project_id)
    done_by: dict[int, set[int]] = defaultdict(set)  # annotator -> task ids
    skipped_by: dict[int, set[int]] = defaultdict(set)  # annotator -> task ids they skipped
    annotators_of: dict[int, set[int]] = defaultdict(set)  # task id -> annotators
    for task in tasks:
        for annotation in task.get("annotations") or []:
            if annotation.get("ground_truth") or annotation.get("completed_by") is None:
                continue  # old-style gold; an annotator since deleted
            who = int(annotation["completed_by"])
            if annotation.get("was_cancelled"):
                skipped_by[who].add(int(task["id"]))  # Label Studio does not serve it to them again
                continue
            done_by[who].add(int(task["id"]))
            annotators_of[int(task["id"])].add(who)
    open_tasks = {int(t["id"]) for t in tasks if len(annotators_of[int(t["id"])]) < overlap}

    collected = collect(tasks)
    by_pair: dict[str, list[str]] = defaultdict(list)
    for vote in collected.votes:
        by_pair[vote.pair_id].append(vote.choice)
    labels = {pair: majority(choices)[0] for pair, choices in by_pair.items()}
    quality = annotator_report(collected.votes, labels, collected.gold)
    me = client.whoami()["id"]
    rows = []
    for user in sorted(client.users(), key=lambda u: u["id"]):
        uid = user["id"]
        if uid == me and not done_by[uid]:
            continue
        q = quality.get(str(uid), {})
        rows.append(
            {
                "id": uid,
                "email": user["email"],
                "done": len(done_by[uid]),
                "remaining": len(open_tasks - done_by[uid] - skipped_by[uid]),
                "agreement_with_majority": q.get("agreement_with_majority"),
                "gold_accuracy": q.get("gold_accuracy"),
            }
        )
    return ProjectStatus(
        title=title,
        project_id=project_id,
        tasks=len(tasks),
        overlap=overlap,
        complete=len(tasks) - len(open_tasks),
        alpha=krippendorff_alpha_nominal(by_pair),
        annotators=rows,
    )
