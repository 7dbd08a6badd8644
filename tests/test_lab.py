"""./course lab serves the lessons: JupyterLab starts headless, answers, lists every lesson and installs at its pins."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "requirements" / "pins.txt"
# ./course brings a stale venv up to date and installs JupyterLab on the first call (seconds to a minute, from PyPI),
# then the server starts in about five seconds
STARTUP_SECONDS = 120


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch(url: str) -> bytes:
    """Return the body of a GET that answers 200 within five seconds."""
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200, url
        return response.read()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Run ./course lab headless on a free port in this test's virtual environment; yield its address and token."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("./course manages a virtual environment: run the tests with one (./course test does)")
    port, token = free_port(), secrets.token_hex(16)
    # the venv running the tests: ./course neither makes another nor points the course's install elsewhere
    jupyter_dirs = {f"JUPYTER_{name}_DIR": str(tmp_path / name.lower()) for name in ("CONFIG", "DATA", "RUNTIME")}
    env = {**os.environ, "COURSE_VENV": sys.prefix, **jupyter_dirs}
    options = ["--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", *(["--allow-root"] if os.geteuid() == 0 else [])]
    log = tmp_path / "lab.log"
    with log.open("w") as out:
        server = subprocess.Popen([str(ROOT / "course"), "lab", *options], cwd=ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{port}"
    try:
        deadline, error = time.monotonic() + STARTUP_SECONDS, None
        while server.poll() is None and time.monotonic() < deadline:
            try:
                fetch(f"{address}/api/status?token={token}")
                break
            except OSError as failure:  # refused until the server listens
                error = failure
                time.sleep(0.5)
        else:
            pytest.fail(f"./course lab never answered ({error}, exit {server.poll()}):\n{log.read_text()[-3000:]}")
        yield address, token
    finally:
        with contextlib.suppress(ProcessLookupError):  # the whole group: a pip still installing stops too
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def pinned_mismatches() -> dict[str, tuple[str, str]]:
    """Return the installed distributions that differ from requirements/pins.txt, as {name: (pin, installed)}."""
    pins = [Requirement(line) for line in PINS.read_text().splitlines() if "==" in line]
    listed = subprocess.run([sys.executable, "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                            check=True).stdout
    installed = {canonicalize_name(item["name"]): Version(item["version"]) for item in json.loads(listed)}
    return {
        pin.name: (str(pin.specifier), str(installed[canonicalize_name(pin.name)]))
        for pin in pins
        if canonicalize_name(pin.name) in installed and installed[canonicalize_name(pin.name)] not in pin.specifier
    }


def test_course_lab_serves_every_lesson_at_pinned_versions(lab):
    address, token = lab
    listing = json.loads(fetch(f"{address}/api/contents/?token={token}"))
    served = {item["name"] for item in listing["content"] if item["type"] == "notebook"}
    lessons = {path.name for path in (ROOT / "notebooks").glob("[0-9]*.ipynb")}
    assert lessons and lessons <= served, sorted(lessons - served)
    assert b"<title>JupyterLab</title>" in fetch(f"{address}/lab?token={token}")
    assert "jupyterlab==" in PINS.read_text() and pinned_mismatches() == {}
