"""Label Studio users: who the token is, the organization's users, new users and their sign-up."""

from __future__ import annotations

import re
from typing import Any

import httpx

from canvas.core.errors import CanvasError
from canvas.labeling.client.base import ClientBase


class UsersMixin(ClientBase):
    """The users calls of `LabelStudioClient`."""

    def whoami(self) -> dict[str, Any]:
        user = self._call("whoami", self.sdk.users.whoami, request_options=self._opts())
        return {"id": user.id, "email": user.email}

    def user_ids_by_email(self) -> dict[str, int]:
        users = self._call("list users", self.sdk.users.list, request_options=self._opts())
        return {u.email: u.id for u in users}

    def create_user(self, email: str, username: str) -> int:
        user = self._call(
            "create user",
            self.sdk.users.create,
            email=email,
            username=username,
            idempotent=False,
            request_options=self._opts(),
        )
        return int(user.id)

    def users(self) -> list[dict[str, Any]]:
        """Every user of the organization: id, email, date joined, last activity (ISO strings)."""
        users = self._call("list users", self.sdk.users.list, request_options=self._opts())
        return [
            {
                "id": int(u.id),
                "email": u.email,
                "date_joined": str(u.date_joined or ""),
                "last_activity": str(u.last_activity or ""),
            }
            for u in users
        ]

    def sign_up(self, email: str, password: str) -> None:
        """Make a user who can log in: sign up through the organization's invite link.

        Label Studio's users API makes users without a password (and has no call to set one), so this
        does what an invited annotator does in a browser: it reads the invite token with our API token,
        then posts the sign-up form (with its CSRF cookie) to `/user/signup/?token=...`.
        """
        invite = self._call(
            "read the invite link",
            self.sdk.organizations.invites.get_invite_link,
            request_options=self._opts(),
        )

        def post() -> httpx.Response:
            with httpx.Client(base_url=self.url, timeout=self._timeout("small")) as browser:
                page = browser.get("/user/signup/", params={"token": invite.token})
                page.raise_for_status()
                csrf = browser.cookies.get("csrftoken", "")
                return browser.post(
                    "/user/signup/",
                    params={"token": invite.token},
                    data={"email": email, "password": password, "csrfmiddlewaretoken": csrf},
                    headers={"Referer": f"{self.url}/user/signup/", "X-CSRFToken": csrf},
                )

        response = self._call("sign up", post, idempotent=False)
        if response.status_code != 302:  # a success redirects; a form shown again lists the reason
            reasons = re.findall(
                r'class="[^"]*(?:error|field_errors)[^"]*"[^>]*>\s*([^<]{3,200})', response.text
            )
            reason = "; ".join(dict.fromkeys(r.strip() for r in reasons)) or f"HTTP {response.status_code}"
            raise CanvasError(f"Label Studio at {self.url} refused to sign up {email}: {reason}")
