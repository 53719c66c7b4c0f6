"""A local Label Studio server: start, stop, status; loopback only, SQLite in its data dir.

Label Studio lives in its own virtualenv (`.venv-labelstudio`, made by `make setup`): its pins clash with
ours. Nothing is installed at run time. A new data dir starts as a copy of a pre-migrated template
(`labeling/install.py`), so a start takes seconds, not the ~30 s of Django migrations.

Secrets: the API token comes from `LABEL_STUDIO_API_KEY`, else one is generated and stored in
`<data dir>/api-token` (mode 0600). The admin password is generated into `<data dir>/admin-password`
(0600). Neither is ever printed in full or logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

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

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
ADMIN_EMAIL = "admin@canvas.local"
TOKEN_ENV = "LABEL_STUDIO_API_KEY"
TOKEN_FILE = "api-token"
PASSWORD_FILE = "admin-password"
PID_FILE = "label-studio.pid"
STATE_FILE = "canvas-server.json"
LOG_FILE = "label-studio.log"


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by us) counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _is_label_studio(pid: int) -> bool:
    """Guard against a recycled PID: only signal a process whose command line is Label Studio's."""
    try:
        return b"label-studio" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    os.chmod(path, 0o600)


def read_token(data_dir: Path | None = None) -> str | None:
    """`$LABEL_STUDIO_API_KEY`, else the token stored in the data dir, else None."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    path = (data_dir or default_data_dir()) / TOKEN_FILE
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

    def describe(self) -> str:
        state = f"running at {self.url} (pid {self.pid})" if self.running else "stopped"
        lines = [f"Label Studio {self.version or ''}: {state}".replace("  ", " ")]
        lines.append(f"data dir: {self.data_dir}")
        lines.append(f"local files root: {self.files_root}")
        if self.token:
            src = TOKEN_ENV if os.environ.get(TOKEN_ENV) else str(self.data_dir / TOKEN_FILE)
            lines.append(f"API token: {mask(self.token)} from {src}")
        if (self.data_dir / PASSWORD_FILE).exists():
            lines.append(f"admin login: {ADMIN_EMAIL}, password in {self.data_dir / PASSWORD_FILE}")
        return "\n".join(lines)


class LabelStudioServer:
    """One Label Studio server bound to 127.0.0.1, owning one data dir.

    Examples:
        >>> server = LabelStudioServer(Path("ls-data"))
        >>> server.start()          # returns its status; the URL is server.url
        >>> server.stop()
    """

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        self.data_dir = Path(data_dir or default_data_dir()).expanduser().resolve()
        self.port = port
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
        pid, state = self.pid, self._state()
        running = pid is not None and _pid_alive(pid) and _is_label_studio(pid)
        if running:
            running = _health(state.get("url", ""), timeout=2.0)
        return ServerStatus(
            running=running,
            url=state.get("url"),
            pid=pid if running else None,
            data_dir=self.data_dir,
            files_root=Path(state.get("files_root", self.files_root)),
            version=state.get("version"),
            token=self.token,
        )

    # -- start -----------------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> ServerStatus:
        """Start the server (or return the one already running on this data dir)."""
        current = self.status()
        if current.running:
            logger.info("Label Studio already running at %s", current.url)
            return current
        binary = label_studio_bin()
        version = label_studio_version(binary)
        port = self.port or free_port()
        if not port_is_free(port):
            # Label Studio would silently move to another port: refuse instead.
            raise CanvasError(f"port {port} on {HOST} is in use: pick another with --port")
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
        url = f"http://{HOST}:{port}"
        log_path = self.data_dir / LOG_FILE
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child process
        cmd = [str(binary), "start", "--no-browser", "--internal-host", HOST, "--port", str(port)]
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
        (self.data_dir / PID_FILE).write_text(f"{proc.pid}\n")
        self._state_path.write_text(
            json.dumps({"url": url, "port": port, "files_root": str(self.files_root), "version": version})
        )
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
                    self.stop()
                    raise
            time.sleep(0.25)
        else:
            self.stop()
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
        """Stop the server by its PID; returns False when none was running."""
        pid = self.pid
        pid_file = self.data_dir / PID_FILE
        if pid is None or not _pid_alive(pid) or not _is_label_studio(pid):
            pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        pid_file.unlink(missing_ok=True)
        logger.info("stopped Label Studio (pid %d)", pid)
        return True


def _reap(pid: int) -> None:
    """Collect the exit status when the server is our own child (tests), so it does not linger."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


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
