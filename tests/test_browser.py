"""Seen in a real browser: ./course lab serves the lessons, and headless Chromium runs their first cells in JupyterLab.

The test starts `./course lab` the way a learner does (the lessons' folder, this checkout on the kernels' PYTHONPATH,
COURSE_PROFILE=cpu and HF_HUB_OFFLINE=1 so it runs offline on a CPU), opens lesson 00 in JupyterLab's own UI, clears the
outputs stored in the file (Edit > Clear Outputs of All Cells: what the page shows next is live) and runs its cells
from the top, one at a time through JupyterLab's command registry (what Shift+Enter does), until the first
cell whose output is a table: the machine report printed as aligned columns in a <pre>. For a figure
it then opens lesson 01 and runs it from the top until its first figure, a matplotlib PNG shown as an <img> in the
output area. It asserts both are rendered in the page and saves a screenshot of each (lesson-00.png, lesson-01.png in
BROWSER_SCREENSHOTS, else in the test's temporary folder); docs/lab-lesson-00.png and docs/lab-lesson-01.png in the
README are those two.

It needs Chromium and its driver on PATH (Debian: apt-get install chromium chromium-driver) and Selenium in the
environment (pip install selenium; not pinned: CI has no browser and skips the test). Where they are, `./course test`
runs it with the rest; alone:

    .venv/bin/python -m pytest -q tests/test_browser.py

It takes about 50 to 65 seconds on two shared CPU cores (two kernels start and import torch), so it is not marked slow.

The notebooks on disk stay as they are: autosave is off in the lab's own settings folder, and the test checks the two
files afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
STARTUP_SECONDS = 120  # ./course lab answers in about five seconds once JupyterLab is installed
PAGE_SECONDS = 90  # JupyterLab's page and the notebook's widgets
CELL_SECONDS = 180  # one cell: the first waits for the kernel to start, and a lesson's first imports load torch
MAX_CELLS = 12  # the first table and the first figure are within a lesson's first dozen code cells


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def digest(path: Path) -> str:
    """Return the SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_for(what: str, seconds: float, probe: Callable[[], Any]) -> Any:
    """Return probe()'s first truthy value, polling twice a second; fail after `seconds` saying what never came."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {seconds:.0f} s waiting for {what}")


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Selenium, or a skip naming what is missing."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if missing:
        pytest.skip(f"no {' or '.join(missing)} on PATH (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,1000", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """Run ./course lab headless on a free port, kernels importing this checkout, offline on the CPU; yield its URL."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("./course manages a virtual environment: run the tests with one (./course test does)")
    port, token = free_port(), secrets.token_hex(16)
    # JupyterLab's settings in a folder of this test's own: autosave off, so running cells leaves the lessons unsaved
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "docmanager-extension"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    news = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"  # no toast asking to fetch Jupyter news
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    jupyter_dirs = {f"JUPYTER_{name}_DIR": str(tmp_path / name.lower()) for name in ("CONFIG", "DATA", "RUNTIME")}
    env = {**os.environ, **jupyter_dirs, "COURSE_VENV": sys.prefix, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "PYTHONPATH": str(ROOT),
           "COURSE_PROFILE": "cpu", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    options = ["--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True",
               *(["--allow-root"] if os.geteuid() == 0 else [])]
    log = tmp_path / "lab.log"
    with log.open("w") as out:
        server = subprocess.Popen([str(ROOT / "course"), "lab", *options], cwd=ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if server.poll() is not None:
            pytest.fail(f"./course lab exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{address}/api/status?token={token}", timeout=5):
            return True
        return False

    try:
        wait_for("./course lab to answer", STARTUP_SECONDS, answers)
        yield f"{address}/lab/tree/{{}}?token={token}"
    finally:
        with contextlib.suppress(ProcessLookupError):  # the whole group: the kernels stop with the server
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


# The notebook panel JupyterLab shows for a file, found through the application it exposes (expose_app_in_browser).
PANEL = """
const app = window.jupyterapp;
const panel = app && app.shell.currentWidget;
if (!panel || !panel.context || panel.context.path !== arguments[0] || !panel.content || !panel.sessionContext) return null;
"""

STATE = PANEL + """
const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
return {ready: panel.context.isReady && panel.content.widgets.length > 0, kernel: kernel ? kernel.status : null,
        cells: panel.content.widgets.map(cell => cell.model.type)};
"""

# The lesson's stored outputs and prompt numbers go (Edit > Clear Outputs of All Cells), so all the page shows is live.
CLEAR = PANEL + """
app.commands.execute('notebook:clear-all-cell-outputs');
return panel.content.widgets.every(cell => cell.model.type !== 'code' || cell.model.outputs.length === 0);
"""

# Select the cell at arguments[1] and run it the way Shift+Enter does (through the command registry); the command's
# promise settles once the kernel has answered and the outputs are in, and then marks the cell done.
RUN = PANEL + """
const index = arguments[1];
window.courseRan = window.courseRan || {};
window.courseRan[index] = false;
panel.content.activeCellIndex = index;
app.commands.execute('notebook:run-cell').then(() => { window.courseRan[index] = true; },
                                                 error => { window.courseRan[index] = String(error); });
return true;
"""

# The cell at arguments[1] once it ran: the run command settled, its prompt holds a number, and the kernel is idle.
DONE = PANEL + r"""
const ran = window.courseRan && window.courseRan[arguments[1]];
if (typeof ran === 'string') return {texts: [], images: [], errors: ['the run command failed: ' + ran]};
const cell = panel.content.widgets[arguments[1]];
const prompt = cell.node.querySelector('.jp-InputArea-prompt');
const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
if (ran !== true || !prompt || !/\[\d+\]/.test(prompt.textContent) || !kernel || kernel.status !== 'idle') return null;
const outputs = [...cell.node.querySelectorAll('.jp-OutputArea-output')];
return {
  texts: outputs.flatMap(o => [...o.querySelectorAll('pre')].map(pre => pre.textContent)),
  images: outputs.flatMap(o => [...o.querySelectorAll('img')].map(img => ({
    type: img.src.slice(0, 30), width: img.naturalWidth, height: img.naturalHeight, complete: img.complete}))),
  errors: cell.model.outputs.toJSON().filter(o => o.output_type === 'error')
    .map(o => `${o.ename}: ${o.evalue}\n${o.traceback.join('\n').slice(-2000)}`),
};
"""

SHOW = PANEL + """
const cell = panel.content.widgets[arguments[1]];
if (!app.shell.leftCollapsed) app.shell.collapseLeft();
if (!app.shell.rightCollapsed) app.shell.collapseRight();
cell.node.scrollIntoView({block: arguments[2]});
return true;
"""


def is_table(text: str) -> bool:
    """Whether printed text is a table: three or more lines whose columns are separated by runs of spaces."""
    return sum(bool(re.search(r"\S {2,}\S", line)) for line in text.splitlines()) >= 3


def run_until(driver: Any, url: str, notebook: str, found: Callable[[dict[str, Any]], bool]) -> tuple[int, dict]:
    """Open a lesson in JupyterLab, run its cells from the top until `found(outputs)`; return that cell and outputs."""
    driver.get(url.format(notebook))
    state = wait_for(f"JupyterLab to open {notebook} with a kernel", PAGE_SECONDS,
                     lambda: (s := driver.execute_script(STATE, notebook)) and s["ready"] and s["kernel"] and s)
    wait_for(f"{notebook}'s stored outputs to clear", PAGE_SECONDS, lambda: driver.execute_script(CLEAR, notebook))
    code_cells = 0
    for index, kind in enumerate(state["cells"]):
        driver.execute_script(RUN, notebook, index)  # a markdown cell renders, a code cell runs
        if kind != "code":
            continue
        code_cells += 1
        outputs = wait_for(f"{notebook}'s cell {index} to run", CELL_SECONDS,
                           lambda index=index: driver.execute_script(DONE, notebook, index))
        assert not outputs["errors"], f"{notebook}'s cell {index} failed:\n" + "\n".join(outputs["errors"])
        if found(outputs):
            return index, outputs
        if code_cells >= MAX_CELLS:
            break
    pytest.fail(f"{notebook}: nothing found in its first {code_cells} code cells")


def screenshot(driver: Any, notebook: str, index: int, block: str, path: Path) -> None:
    """Save a PNG of the lab with the cell at `index` scrolled into view (block: 'start', 'center' or 'end')."""
    driver.execute_script(SHOW, notebook, index, block)
    time.sleep(1)  # the scroll and the collapsed sidebars settle
    path.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(path)), path


def test_lessons_render_their_first_table_and_figure(browser: Any, lab: str, tmp_path: Path) -> None:
    lessons = {name: NOTEBOOKS / name for name in ("00_tour.ipynb", "01_encoder_fast_path.ipynb")}
    before = {name: digest(path) for name, path in lessons.items()}
    shots = Path(os.environ.get("BROWSER_SCREENSHOTS", tmp_path))

    index, outputs = run_until(browser, lab, "00_tour.ipynb", lambda out: any(map(is_table, out["texts"])))
    table = next(text for text in outputs["texts"] if is_table(text))
    # the machine report of start_lesson: one row per probe, this run's CPU profile in it
    assert re.search(r"^device\s+cpu$", table, re.M) and re.search(r"^torch\s+\S+", table, re.M), table
    screenshot(browser, "00_tour.ipynb", index, "start", shots / "lesson-00.png")  # the table, not the stderr above

    index, outputs = run_until(browser, lab, "01_encoder_fast_path.ipynb", lambda out: bool(out["images"]))
    figure = outputs["images"][0]
    # matplotlib's inline PNG, decoded by the browser (a broken image has no natural size)
    assert figure["type"].startswith("data:image/png;base64,") and figure["complete"], figure
    assert figure["width"] > 200 and figure["height"] > 100, figure
    assert any("padding" in text for text in outputs["texts"]), outputs["texts"]  # the line printed above the chart
    screenshot(browser, "01_encoder_fast_path.ipynb", index, "end", shots / "lesson-01.png")

    assert {name: digest(path) for name, path in lessons.items()} == before, "the lab saved a lesson"
