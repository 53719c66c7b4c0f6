"""A local Label Studio server: start, stop, status; loopback only, SQLite in its data dir.

Label Studio lives in its own virtualenv (`.venv-labelstudio`, made by `make setup`): its pins clash with
ours. Nothing is installed at run time. A new data dir starts as a copy of a pre-migrated template
(`labeling/install.py`), so a start takes seconds, not the ~30 s of Django migrations.

One data dir, one server: `start` holds an fcntl lock on `<data dir>/.canvas-server.lock` around the
check and the spawn and records the pid and port under it, so two starts at once run one server.
`status` and `stop` also scan /proc for Label Studio processes whose environment names this data dir,
so a server whose record was lost (an orphan) is still seen and stopped.

Secrets: the API token comes from `LABEL_STUDIO_API_KEY`, else one is generated and stored in
`<data dir>/api-token` (mode 0600). The admin password is generated into `<data dir>/admin-password`
(0600). Neither is ever printed in full or logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from canvas.core.atomic import write_text_atomic
from canvas.core.errors import CanvasError
from canvas.core.paths import canvas_home
from canvas.labeling.install import (
    DB_FILE,
    FILES_DIR,
    TEMPLATE_MARKER,
    build_template,
    label_studio_bin,
    label_studio_version,
    server_env,
)
from canvas.labeling.processes import data_dir_processes, is_label_studio, pid_alive, terminate

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
ADMIN_EMAIL = "admin@canvas.local"
TOKEN_ENV = "LABEL_STUDIO_API_KEY"
TOKEN_FILE = "api-token"
PASSWORD_FILE = "admin-password"
PID_FILE = "label-studio.pid"
STATE_FILE = "canvas-server.json"
LOG_FILE = "label-studio.log"
LOCK_FILE = ".canvas-server.lock"


def default_data_dir() -> Path:
    """`$CANVAS_HOME/labelstudio`: where `canvas label server start` keeps its data by default."""
    return canvas_home() / "labelstudio"


def mask(secret: str) -> str:
    """Show enough of a token to tell two apart, never the whole thing."""
    return f"{secret[:4]}...({len(secret)} chars)" if len(secret) > 8 else "***"


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    os.chmod(path, 0o600)


def read_token(data_dir: Path | None = None, url: str | None = None) -> str | None:
    """`$LABEL_STUDIO_API_KEY`, else the token stored in the data dir, else None. With `url`: the stored
    token only when `url` is the server started on that data dir, so a local server's credential is never
    sent to another host (a shared server needs its own token, in the environment)."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    data_dir = data_dir or default_data_dir()
    if url is not None:
        state = data_dir / STATE_FILE
        try:
            started = json.loads(state.read_text()).get("url") if state.exists() else None
        except (OSError, ValueError):
            started = None
        if started is None or started.rstrip("/") != url.rstrip("/"):
            return None
    path = data_dir / TOKEN_FILE
    return path.read_text().strip() if path.exists() else None


@dataclass
class ServerStatus:
    running: bool
    url: str | None
    pid: int | None
    data_dir: Path
    files_root: Path
    version: str | None = None
    token: str | None = field(default=None, repr=False)
    others: list[int] = field(default_factory=list)

    def describe(self) -> str:
        state = f"running at {self.url} (pid {self.pid})" if self.running else "stopped"
        lines = [f"Label Studio{' ' + self.version if self.version else ''}: {state}"]
        lines.append(f"data dir: {self.data_dir}")
        lines.append(f"local files root: {self.files_root}")
        if self.token:
            src = TOKEN_ENV if os.environ.get(TOKEN_ENV) else str(self.data_dir / TOKEN_FILE)
            lines.append(f"API token: {mask(self.token)} from {src}")
        if (self.data_dir / PASSWORD_FILE).exists():
            lines.append(f"admin login: {ADMIN_EMAIL}, password in {self.data_dir / PASSWORD_FILE}")
        if self.others:
            lines.append(
                f"also on this data dir: Label Studio pids {self.others} (not answering or not recorded); "
                "`canvas label server stop` stops them all"
            )
        return "\n".join(lines)


class LabelStudioServer:
    """One Label Studio server bound to `host` (127.0.0.1 unless told otherwise), owning one data dir.

    Examples:
        >>> server = LabelStudioServer(Path("ls-data"))
        >>> server.start()          # returns its status; the URL is server.url
        >>> server.stop()
    """

    def __init__(self, data_dir: Path | None = None, port: int | None = None, host: str = HOST) -> None:
        self.data_dir = Path(data_dir or default_data_dir()).expanduser().resolve()
        self.port = port
        # Another address (e.g. a network namespace's veth end) serves other hosts; loopback stays the default.
        self.host = host
        self.files_root = self.data_dir / FILES_DIR

    # -- state -----------------------------------------------------------------------------------
    @property
    def _state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def _state(self) -> dict:
        try:
            return json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return {}

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data_dir / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None

    @property
    def url(self) -> str | None:
        return self._state().get("url")

    @property
    def token(self) -> str | None:
        return read_token(self.data_dir)

    def status(self) -> ServerStatus:
        """Running = a Label Studio of this data dir answers /health: the recorded one, else any found."""
        pid, state = self.pid, self._state()
        processes = data_dir_processes(self.data_dir)
        if pid is not None and pid not in processes and pid_alive(pid) and is_label_studio(pid):
            processes[pid] = state.get("port")
        url, serving = state.get("url"), None
        if pid in processes and _health(url or "", timeout=2.0):
            serving = pid
        else:
            for other, port in sorted(processes.items()):
                if port and _health(f"http://{self.host}:{port}", timeout=2.0):
                    serving, url = other, f"http://{self.host}:{port}"
                    break
        return ServerStatus(
            running=serving is not None,
            url=url,
            pid=serving,
            data_dir=self.data_dir,
            files_root=Path(state.get("files_root", self.files_root)),
            version=state.get("version"),
            token=self.token,
            others=sorted(set(processes) - {serving}),
        )

    @contextlib.contextmanager
    def _locked(self, timeout: float) -> Iterator[None]:
        """Hold the data dir's lock (one start or stop at a time), waiting up to `timeout` seconds."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / LOCK_FILE, "a") as lock:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise CanvasError(
                            f"another canvas command holds {self.data_dir / LOCK_FILE} for over "
                            f"{timeout:.0f} s (a server starting?); try again"
                        ) from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _record(self, pid: int, url: str, port: int, version: str | None) -> None:
        """The pid file and the state (url, port, files root), each replaced whole."""
        for name, text in (
            (PID_FILE, f"{pid}\n"),
            (
                STATE_FILE,
                json.dumps(
                    {"url": url, "port": port, "files_root": str(self.files_root), "version": version}
                ),
            ),
        ):
            write_text_atomic(self.data_dir / name, text)

    # -- start -----------------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> ServerStatus:
        """Start the server (or return the one already running on this data dir).

        The check and the spawn happen under the data dir's lock, so two starts at once run one server.
        """
        with self._locked(timeout + 30):
            current = self.status()
            if current.running:
                if current.pid != self.pid:  # an orphan that answers: record it, do not start another
                    self._record(
                        current.pid, current.url, int(current.url.rsplit(":", 1)[1]), current.version
                    )
                logger.info("Label Studio already running at %s", current.url)
                return self.status()
            if current.others:
                raise CanvasError(
                    f"Label Studio pids {current.others} use {self.data_dir} but do not answer: stop them "
                    "with `canvas label server stop` before starting another on the same database"
                )
            return self._spawn(timeout)

    def _spawn(self, timeout: float) -> ServerStatus:
        binary = label_studio_bin()
        version = label_studio_version(binary)
        port = self.port or free_port(self.host)
        if not port_is_free(port, self.host):
            # Label Studio would silently move to another port: refuse instead.
            raise CanvasError(f"port {port} on {self.host} is in use: pick another with --port")
        first_start = not (self.data_dir / DB_FILE).exists()
        if first_start:
            self._init_data_dir(binary)
        self.files_root.mkdir(parents=True, exist_ok=True)
        token = self._ensure_token()
        env = server_env(self.data_dir, self.files_root)
        if not (self.data_dir / "canvas-initialized").exists():
            # Only effective when the organization is created, i.e. on the first start of this data dir.
            env.update(
                LABEL_STUDIO_USERNAME=ADMIN_EMAIL,
                LABEL_STUDIO_PASSWORD=self._ensure_password(),
                LABEL_STUDIO_USER_TOKEN=token,
                LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
            )
        url = f"http://{self.host}:{port}"
        log_path = self.data_dir / LOG_FILE
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child process
        cmd = [str(binary), "start", "--no-browser", "--internal-host", self.host, "--port", str(port)]
        proc = subprocess.Popen(
            [*cmd, "--log-level", "WARNING"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.data_dir,
            start_new_session=True,  # survives the CLI that started it; stopped by PID
        )
        log.close()
        self._record(proc.pid, url, port, version)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise CanvasError(
                    f"Label Studio exited with code {proc.returncode} while starting; see {self.data_dir / LOG_FILE}"
                )
            if _health(url, timeout=1.0):
                try:
                    if self._serving_on(log_path, log_offset, port):
                        break
                except CanvasError:
                    self._stop_all()
                    raise
            time.sleep(0.25)
        else:
            self._stop_all()
            raise CanvasError(
                f"Label Studio did not answer on {url} within {timeout:.0f} s; see {self.data_dir / LOG_FILE}"
            )
        self._check_token(url, token)
        (self.data_dir / "canvas-initialized").touch()
        logger.info("Label Studio %s running at %s (pid %d)", version, url, proc.pid)
        return self.status()

    @staticmethod
    def _serving_on(log_path: Path, offset: int, port: int) -> bool:
        """Our process (not another taking the port meanwhile) says it serves on `port`.

        Label Studio moves silently to another port when its port is taken; its log names the real one.
        """
        with open(log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        match = re.search(r"Starting development server at http://[^:]+:(\d+)/", text)
        if match and int(match.group(1)) != port:
            raise CanvasError(f"port {port} was taken while Label Studio started; start it again")
        return match is not None

    def _init_data_dir(self, binary: Path) -> None:
        template = build_template(binary)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # `cp -a` keeps the SQLite file as the migrations left it; a start then takes seconds.
        subprocess.run(["cp", "-a", f"{template}/.", str(self.data_dir)], check=True)
        (self.data_dir / TEMPLATE_MARKER).unlink(missing_ok=True)
        os.chmod(self.data_dir, 0o700)

    def _ensure_token(self) -> str:
        if os.environ.get(TOKEN_ENV):
            token = os.environ[TOKEN_ENV]
            if len(token) <= 5:
                raise CanvasError(f"{TOKEN_ENV} must be longer than 5 characters")
            return token
        path = self.data_dir / TOKEN_FILE
        if path.exists():
            return path.read_text().strip()
        token = secrets.token_hex(20)
        _write_secret(path, token)
        return token

    def _ensure_password(self) -> str:
        path = self.data_dir / PASSWORD_FILE
        if path.exists():
            return path.read_text().strip()
        password = secrets.token_urlsafe(16)
        _write_secret(path, password)
        return password

    def _check_token(self, url: str, token: str) -> None:
        response = httpx.get(f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"})
        if response.status_code == 401:
            raise CanvasError(
                f"Label Studio at {url} refused the API token {mask(token)} (401): this data dir was "
                f"initialised with another token; unset {TOKEN_ENV} or use the one it was created with"
            )

    # -- stop ------------------------------------------------------------------------------------
    def stop(self, timeout: float = 15.0) -> bool:
        """Stop every Label Studio of this data dir (the recorded one and any orphan); False if none ran."""
        with self._locked(180.0):
            return self._stop_all(timeout)

    def _stop_all(self, timeout: float = 15.0) -> bool:
        pids = set(data_dir_processes(self.data_dir))
        pid = self.pid
        if pid is not None and pid_alive(pid) and is_label_studio(pid):
            pids.add(pid)
        for each in sorted(pids):
            terminate(each, timeout)
        (self.data_dir / PID_FILE).unlink(missing_ok=True)
        if pids:
            logger.info("stopped Label Studio (pids %s)", sorted(pids))
        return bool(pids)


def _health(url: str, timeout: float) -> bool:
    if not url:
        return False
    try:
        response = httpx.get(f"{url}/health", timeout=timeout)
        return response.status_code == 200 and response.json().get("status") == "UP"
    except (httpx.HTTPError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    """`python -m canvas.labeling.server template`: build the data-dir template (used by `make setup`)."""
    args = argv if argv is not None else sys.argv[1:]
    if args != ["template"]:
        print("usage: python -m canvas.labeling.server template", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(build_template())
    return 0


if __name__ == "__main__":
    sys.exit(main())
