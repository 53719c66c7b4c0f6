"""The one place that talks to Label Studio: the client's constructor, timeouts, retries and errors.

The calls themselves live beside this module by concern (`users.py`, `projects.py`, `files.py`) as
mixins of `ClientBase`; `canvas.labeling.client.LabelStudioClient` puts them together.

Connection failures are retried with exponential backoff, then raise one `CanvasError` naming the URL.
A rejected token raises a `CanvasError` that says so (the token itself is masked). Requests that write
(POST) are retried only when the connection was never made, so a retry cannot duplicate a write (except
file uploads, which are safe to repeat). Reads are also retried on 502/503/504.

Every request has a connect timeout and a read timeout sized to the call (`Timeouts`): seconds for
small calls, minutes only for the export. A read timeout is not retried (a server that accepted the
request and said nothing is hung; asking again only multiplies the wait), so one call waits at most
its read timeout plus the connection tries; the error says what timed out and after how long.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from canvas.core.errors import CanvasError
from canvas.labeling.config import Kind, Timeouts
from canvas.labeling.server import TOKEN_ENV, default_data_dir, mask, read_token

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Errors where the request never reached the server: safe to retry any call.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


class UnreadableFile(CanvasError):
    """A file a task references that this server does not serve (4xx), or a reference that points at
    another host: that task's problem, not the server's (pull rejects its votes, with this reason)."""


class ClientBase:
    """A thin wrapper over `label_studio_sdk.LabelStudio`: retries, timeouts, one error style.

    Args:
        url: server base URL, e.g. `http://127.0.0.1:8080`.
        token: API token; default `$LABEL_STUDIO_API_KEY`, else the one `canvas label server start` stored.
        retries: attempts per call when the server cannot be reached.
        backoff: first wait in seconds; doubled after each failed attempt.
        timeout: one read timeout for every kind of call (tests); default `Timeouts.from_env()`.
        timeouts: the timeouts per kind of call.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        retries: int = 4,
        backoff: float = 0.25,
        timeout: float | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        from label_studio_sdk import LabelStudio

        self.url = url.rstrip("/")
        token = token or read_token(url=self.url)
        if not token:
            raise CanvasError(
                f"no Label Studio API token for {self.url}: set {TOKEN_ENV} to this server's token, or start "
                f"a local one with `canvas label server start` (it stores its own in {default_data_dir()})"
            )
        self.token = token
        self.retries, self.backoff = max(1, retries), backoff
        timeouts = timeouts or Timeouts.from_env()
        if timeout is not None:
            timeouts = Timeouts(timeout, timeout, timeout, min(timeouts.connect, timeout))
        self.timeouts = timeouts
        # Our own httpx client: its default is the small-call timeout; each call passes its own.
        self.sdk = LabelStudio(
            base_url=self.url,
            api_key=token,
            max_retries=0,
            httpx_client=httpx.Client(timeout=self._timeout("small"), follow_redirects=True),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, token={mask(self.token)!r})"

    # -- the one place that talks to the server --------------------------------------------------
    def _timeout(self, kind: Kind) -> httpx.Timeout:
        read = self.timeouts.read(kind)
        return httpx.Timeout(read, connect=min(self.timeouts.connect, read))

    def _opts(self, kind: Kind = "small") -> dict[str, Any]:
        """The SDK's per-request options: this kind of call's timeouts."""
        return {"timeout": self._timeout(kind)}

    def _call(
        self,
        what: str,
        fn: Callable[..., T],
        *args: Any,
        idempotent: bool = True,
        kind: Kind = "small",
        **kwargs: Any,
    ) -> T:
        from label_studio_sdk.core.api_error import ApiError

        started, delay = time.monotonic(), self.backoff
        for attempt in range(1, self.retries + 1):
            try:
                return fn(*args, **kwargs)
            except _NOT_SENT as exc:
                if attempt == self.retries:
                    raise CanvasError(
                        f"Label Studio at {self.url} is not reachable ({what}: {type(exc).__name__} after "
                        f"{self.retries} tries, {time.monotonic() - started:.1f} s); start it with "
                        "`canvas label server start` or check --url"
                    ) from exc
                logger.warning("%s: %s, retrying in %.2f s", what, type(exc).__name__, delay)
            except httpx.TimeoutException as exc:  # connected, then no answer: hung, not retried
                applied = "" if idempotent else "; it may have been applied: re-running push is safe"
                raise CanvasError(
                    f"Label Studio at {self.url} did not answer {what} within {self.timeouts.read(kind):g} s "
                    f"({type(exc).__name__}, {time.monotonic() - started:.1f} s in all){applied}; is it hung? "
                    f"Restart it, or raise {Timeouts.ENV[kind]}"
                ) from exc
            except httpx.TransportError as exc:
                if not idempotent:  # a write that may have reached the server: not repeated
                    raise CanvasError(
                        f"Label Studio at {self.url} did not complete {what} ({type(exc).__name__}); it may "
                        "have been applied: re-running push is safe (it skips pairs already there)"
                    ) from exc
                if attempt == self.retries:
                    raise CanvasError(
                        f"Label Studio at {self.url} failed {what} ({type(exc).__name__} after "
                        f"{self.retries} tries); check the server's log"
                    ) from exc
                logger.warning("%s: %s, retrying in %.2f s", what, type(exc).__name__, delay)
            except httpx.HTTPStatusError as exc:
                raise CanvasError(
                    f"Label Studio at {self.url}: {what} failed (HTTP {exc.response.status_code})"
                ) from exc
            except ApiError as exc:
                if exc.status_code == 401:
                    raise CanvasError(
                        f"Label Studio at {self.url} rejected the API token {mask(self.token)} (401 "
                        f"Unauthorized): set {TOKEN_ENV} to this server's token"
                    ) from exc
                if exc.status_code in (502, 503, 504) and idempotent and attempt < self.retries:
                    logger.warning("%s: HTTP %s, retrying in %.2f s", what, exc.status_code, delay)
                else:
                    body = json.dumps(exc.body)[:300] if exc.body is not None else ""
                    tries = f" after {attempt} tries" if attempt > 1 else ""
                    raise CanvasError(
                        f"Label Studio at {self.url}: {what} failed (HTTP {exc.status_code}{tries}) {body}".rstrip()
                    ) from exc
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def resolve(self, reference: str) -> httpx.URL:
        """A server path or a task's file reference as a URL on this server; `UnreadableFile` for one that
        resolves to another scheme, host or port (`@other:1234/x`, `//other/x`, `http://other/x`): the token
        is only ever sent to the server itself."""
        base = httpx.URL(self.url + "/")
        try:
            # A server path keeps the URL's own path prefix; anything else is resolved as a browser would.
            target = (
                httpx.URL(self.url + reference)
                if reference.startswith("/") and not reference.startswith("//")
                else base.join(reference)
            )
        except httpx.InvalidURL as exc:
            raise UnreadableFile(f"{reference!r} is not a valid URL reference ({exc})") from None
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            port = "" if target.port is None else f":{target.port}"
            raise UnreadableFile(
                f"{reference[:200]!r} points at {target.scheme}://{target.host}{port}, not at the server "
                f"{self.url}: not fetched"
            )
        return target

    def _http(
        self, method: str, path: str, kind: Kind = "small", ok: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        """One plain HTTP request with the token (for what the SDK lacks or does slowly).

        An error status raises the SDK's `ApiError`, so `_call` treats it as it treats the SDK's: 401 names
        the token, 502/503/504 are retried when the call is idempotent. Statuses in `ok` are returned.
        """
        from label_studio_sdk.core.api_error import ApiError

        response = httpx.request(
            method,
            self.resolve(path),
            headers={"Authorization": f"Token {self.token}"},
            timeout=self._timeout(kind),
            **kwargs,
        )
        if response.status_code >= 400 and response.status_code not in ok:
            raise ApiError(status_code=response.status_code, body=response.text[:300] or None)
        return response
