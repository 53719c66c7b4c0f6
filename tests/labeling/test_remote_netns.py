"""Push and pull against a Label Studio in its own network namespace: another host, as far as the network goes.

The server runs inside a fresh namespace (`ip netns`, its own loopback) and listens only on its end of a
veth pair; the client, in the host namespace, is told only `--url http://<namespace address>:PORT` and the
token (an empty CANVAS_HOME, no data dir), so the images can only reach the server through its upload API.
The veth addresses (10.231.x.y/30) are private to this machine: nothing outside it reaches them, and the
namespace (hence the veth pair) is deleted after the test, pass or fail.

Needs root and iproute2's `ip netns`; skipped with the reason otherwise.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from canvas.cli import main
from canvas.labeling.client import LabelStudioClient
from canvas.labeling.schema import choice_result
from canvas.labeling.server import LabelStudioServer

pytestmark = pytest.mark.labelstudio

# Run inside the namespace: start the server on the namespace address, print its URL. The server is
# spawned in its own session, so it outlives this script (and is stopped by PID at teardown).
START = (
    "import sys; from pathlib import Path; from canvas.labeling.server import LabelStudioServer; "
    "print(LabelStudioServer(Path(sys.argv[1]), host=sys.argv[2]).start(timeout=240).url)"
)


@dataclass
class NetnsServer:
    url: str
    token: str


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def netns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsServer]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's `ip` is not installed: no network namespace")
    pid = os.getpid()
    ns, host_end, ns_end = f"canvas-ls-{pid}", f"cvh{pid}"[:15], f"cvn{pid}"[:15]
    # A /30 per test process, so two sessions on this machine do not collide.
    third, base = (pid // 64) % 256, (pid % 64) * 4
    host_addr, ns_addr = f"10.231.{third}.{base + 1}", f"10.231.{third}.{base + 2}"
    data_dir = tmp_path_factory.mktemp("netns-labelstudio")  # never told to the client
    server = LabelStudioServer(data_dir, host=ns_addr)
    try:
        _ip("netns", "add", ns)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"`ip netns add` is not available here: {exc.stderr.strip()}")
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", ns_end, "netns", ns)
        _ip("addr", "add", f"{host_addr}/30", "dev", host_end)
        _ip("link", "set", host_end, "up")
        for args in (("addr", "add", f"{ns_addr}/30", "dev", ns_end), ("link", "set", ns_end, "up")):
            _ip("netns", "exec", ns, "ip", *args)
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        token = secrets.token_hex(20)
        started = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", START, str(data_dir), ns_addr],
            env=os.environ | {"LABEL_STUDIO_API_KEY": token},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert started.returncode == 0, started.stderr[-2000:]
        url = started.stdout.strip().splitlines()[-1]
        assert url.startswith(f"http://{ns_addr}:"), url
        yield NetnsServer(url, token)
    finally:
        # /proc is shared across network namespaces: the host side finds and stops the server by PID.
        server.stop()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", host_end], capture_output=True, timeout=30)  # if the move failed
    assert not server.status().running


def _tasks(client: LabelStudioClient, title: str) -> dict[str, dict]:
    project_id = client.find_project(title)
    return {data["pair_id"]: data | {"_id": task_id} for task_id, data in client.iter_task_data(project_id)}


def test_push_and_pull_across_a_network_namespace(
    netns_server: NetnsServer,
    candidates: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = netns_server.url
    monkeypatch.setenv("CANVAS_HOME", str(tmp_path / "client-home"))
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", netns_server.token)
    client = LabelStudioClient(url, netns_server.token, retries=2, backoff=0.05)
    push = ["label", "push", "--candidates", str(candidates), "--project", "netns pairs", "--url", url]

    assert main(push) == 0
    assert "8 files uploaded" in capsys.readouterr().out
    tasks = _tasks(client, "netns pairs")
    assert len(tasks) == 4
    assert all(t[k].startswith("/data/upload/") for t in tasks.values() for k in ("image_0", "image_1"))
    # The server in the namespace serves each image (through the API, with the token) byte for byte.
    source = {r["pair_id"]: r for r in pq.read_table(candidates / "candidates.parquet").to_pylist()}
    for pair, task in tasks.items():
        assert client.fetch_file(task["image_0"]) == source[pair]["image_0"]
        assert client.fetch_file(task["image_1"]) == source[pair]["image_1"]

    # A re-push across the namespace uploads nothing and creates nothing.
    assert main(push) == 0
    out = capsys.readouterr().out
    assert "0 tasks created, 4 already there" in out and "0 files uploaded" in out
    project_id = client.find_project("netns pairs")
    images = client.find_project(f"canvas images for project {project_id}")
    assert len(client.file_uploads(images)) == 8 and len(_tasks(client, "netns pairs")) == 4

    user = client.create_user("netns1@test.local", "netns1")
    pair, task = next(iter(sorted(tasks.items())))
    client.create_annotation(task["_id"], choice_result("left"), completed_by=user)
    out_dir = tmp_path / "pulled"
    pull = ["label", "pull", "--project", "netns pairs", "--output", str(out_dir), "--url", url]
    assert main(pull) == 0
    (row,) = pq.read_table(out_dir / "preferences.parquet").to_pylist()
    assert (row["pair_id"], row["label_0"], row["user_id"]) == (pair, 1.0, user)
    assert row["image_0_url"] == url + task["image_0"]
    pulled = Image.open(io.BytesIO(row["jpg_0"]))
    assert pulled.size == Image.open(io.BytesIO(source[pair]["image_0"])).size
