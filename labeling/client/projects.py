"""Label Studio projects and what they hold: local-files storages, tasks, annotations, predictions, exports."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from canvas.core.errors import CanvasError
from canvas.labeling.client.base import ClientBase


class ProjectsMixin(ClientBase):
    """The project, task and annotation calls of `LabelStudioClient`."""

    def project_ids(self, title: str) -> list[int]:
        """Ids of every project with this exact title, lowest (oldest) first."""

        def matches() -> list[int]:
            return sorted(
                p.id
                for p in self.sdk.projects.list(title=title, page_size=1000, request_options=self._opts())
                if p.title == title
            )

        return self._call("list projects", matches)

    def find_project(self, title: str) -> int | None:
        """Id of the project with this exact title; an error when several share it."""
        found = self.project_ids(title)
        if len(found) > 1:
            raise CanvasError(f"{len(found)} projects on {self.url} are titled {title!r}: rename all but one")
        return found[0] if found else None

    def find_or_create_project(
        self, title: str, label_config: str, overlap: int, description: str = ""
    ) -> tuple[int, bool]:
        """(id, whether this call created it) of the project with this title. Two callers creating one
        title at once (two pushes) both find none and both create: the oldest wins, the others delete
        theirs (still empty) and use it, so one project remains."""
        found = self.find_project(title)
        if found is not None:
            return found, False
        created = self.create_project(title, label_config, overlap, description)
        oldest = self.project_ids(title)[0]
        if oldest == created:
            return created, True
        self.delete_project(created)
        return oldest, False

    def create_project(self, title: str, label_config: str, overlap: int, description: str = "") -> int:
        project = self._call(
            "create project",
            self.sdk.projects.create,
            title=title,
            description=description,
            label_config=label_config,
            maximum_annotations=overlap,
            overlap_cohort_percentage=100,
            # No `show_ground_truth_first` (deprecated in Label Studio): gold answers are task meta, not
            # ground-truth annotations, so gold tasks are queued like any other.
            show_skip_button=True,
            idempotent=False,
            request_options=self._opts(),
        )
        return int(project.id)

    def update_project(self, project_id: int, **fields: Any) -> None:
        self._call(
            "update project", self.sdk.projects.update, id=project_id, request_options=self._opts(), **fields
        )

    def get_project(self, project_id: int) -> dict[str, Any]:
        project = self._call(
            "get project", self.sdk.projects.get, id=project_id, request_options=self._opts()
        )
        return {
            "id": project.id,
            "title": project.title,
            "label_config": project.label_config,
            "maximum_annotations": project.maximum_annotations,
        }

    def delete_project(self, project_id: int) -> None:
        self._call("delete project", self.sdk.projects.delete, id=project_id, request_options=self._opts())

    # -- storage, tasks --------------------------------------------------------------------------
    def local_storage_paths(self, project_id: int) -> list[str]:
        storages = self._call(
            "list local storages",
            self.sdk.import_storage.local.list,
            project=project_id,
            request_options=self._opts(),
        )
        return [s.path for s in storages]

    def create_local_storage(self, project_id: int, path: str, title: str) -> None:
        # Not synced on purpose: a sync would create one task per file; our tasks reference the files.
        self._call(
            "create local-files storage",
            self.sdk.import_storage.local.create,
            project=project_id,
            path=path,
            title=title,
            use_blob_urls=True,
            idempotent=False,
            request_options=self._opts(),
        )

    def import_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> list[int]:
        response = self._call(
            "import tasks",
            self.sdk.projects.import_tasks,
            id=project_id,
            request=list(tasks),
            return_task_ids=True,
            idempotent=False,
            kind="bulk",
            request_options=self._opts("bulk"),
        )
        return list(response.task_ids or [])

    def iter_tasks(self, project_id: int, page_size: int = 5000) -> Iterator[dict[str, Any]]:
        """Every task of a project: `{"id", "data", "meta"}` (meta holds the gold answer, `canvas_gold`)."""

        def page(number: int) -> httpx.Response:
            # `fields=task_only&include=...`: 10k tasks in ~3 s; the SDK's `fields=all` takes ~14 s.
            params = {"project": project_id, "page": number, "page_size": page_size}
            params |= {"fields": "task_only", "include": "id,data,meta"}
            return self._http("GET", "/api/tasks", kind="bulk", ok=(404,), params=params)  # 404: past the end

        number = 1
        while True:
            response = self._call("list tasks", page, number, kind="bulk")
            if response.status_code == 404:
                return
            tasks = response.json().get("tasks", [])
            for task in tasks:
                yield {"id": int(task["id"]), "data": task.get("data") or {}, "meta": task.get("meta") or {}}
            if len(tasks) < page_size:
                return
            number += 1

    def iter_task_data(self, project_id: int, page_size: int = 5000) -> Iterator[tuple[int, dict[str, Any]]]:
        """(task id, task data) for every task of a project."""
        for task in self.iter_tasks(project_id, page_size):
            yield task["id"], task["data"]

    def update_task_meta(self, task_id: int, meta: dict[str, Any]) -> None:
        """Replace a task's `meta` (the labeling page does not show it); data and annotations stay."""
        self._call(
            "update task meta",
            lambda: self._http("PATCH", f"/api/tasks/{task_id}", json={"meta": meta}),
            idempotent=True,  # setting the same meta twice is harmless
        )

    # -- annotations, predictions ----------------------------------------------------------------
    def create_annotation(
        self,
        task_id: int,
        result: list[dict[str, Any]],
        completed_by: int | None = None,
        lead_time: float | None = None,
        ground_truth: bool = False,
        was_cancelled: bool = False,
    ) -> int:
        fields: dict[str, Any] = {
            "result": result,
            "ground_truth": ground_truth,
            "was_cancelled": was_cancelled,
        }
        if completed_by is not None:
            fields["completed_by"] = completed_by
        if lead_time is not None:
            fields["lead_time"] = lead_time
        annotation = self._call(
            "create annotation",
            self.sdk.annotations.create,
            id=task_id,
            idempotent=False,
            request_options=self._opts(),
            **fields,
        )
        if ground_truth:
            # The create call ignores the flag; an update sets it.
            self._call(
                "mark ground truth",
                self.sdk.annotations.update,
                id=annotation.id,
                ground_truth=True,
                request_options=self._opts(),
            )
        return int(annotation.id)

    def predictions(self, project_id: int) -> dict[int, list[dict[str, Any]]]:
        """Pre-labels per task id: result, score, model_version."""
        found = self._call(
            "list predictions",
            self.sdk.predictions.list,
            project=project_id,
            kind="bulk",
            request_options=self._opts("bulk"),
        )
        out: dict[int, list[dict[str, Any]]] = {}
        for p in found:
            out.setdefault(int(p.task), []).append(
                {"result": p.result, "score": p.score, "model_version": p.model_version}
            )
        return out

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task with its annotations (Label Studio's JSON export)."""

        def download() -> bytes:
            chunks = self.sdk.projects.exports.download_sync(
                id=project_id,
                export_type="JSON",
                download_all_tasks=True,
                request_options=self._opts("export"),
            )
            return b"".join(chunks)

        return json.loads(self._call("export tasks", download, kind="export"))
