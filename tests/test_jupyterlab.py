"""The workbook as a person uses it: JupyterLab in the project's environment, driven in Debian's Chromium.

One scenario (the ``lab_run`` fixture) does what a person does, then the tests check what it saw:

* JupyterLab starts from this environment on a free loopback port with a temporary token, serving a
  temporary folder that holds a copy of ``notebooks/`` (so ``RUN_DIR = "../runs/default"`` lands there)
  and temporary Jupyter config, data, runtime, settings and workspace folders.
* 01_setup: make the data small in the parameters cell, Run → Run All Cells, pick a real Hub model in
  the model picker (the memory estimate changes, and a notice says it is not available offline), pick
  the offline tiny Qwen2.5-VL (the notice goes), click the "json" action format, then run the cells
  after the picker again, which saves ``runs/default/config.yaml``.
* 02_prompting: three screenshots (parameters cell edited), Run All Cells; the overlay gallery renders.
* 03_lora_train: a few training steps (parameters cell edited), Run All Cells.
* 04_eval: the live MiniWoB++ part switched off in the parameters cell, Run All Cells; the galleries
  render and the prediction browser pages to another image with "next ▶".
* The pictures the notebooks saved into ``runs/default/figures`` are real images.

Screenshots go to the test's temporary folder (printed; ``pytest -s`` shows it). With
``UIVLM_UPDATE_SCREENSHOTS=1`` the 01_setup one is also copied to ``docs/images/jupyterlab_setup.png``
for the README. Chromium is Debian's (``make system-deps``); Playwright never downloads a browser.
"""

from __future__ import annotations

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
from pathlib import Path

import pytest
import yaml

from uivlm_helpers.core.paths import NOTEBOOKS_DIR, REPO_ROOT

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("UIVLM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SCREENSHOT_DOC = REPO_ROOT / "docs" / "images" / "jupyterlab_setup.png"
ON_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

# What the scenario chooses in 01's pickers (labels as the model picker shows them).
HUB_MODEL = ("Qwen2-VL · 2B Instruct", "Qwen/Qwen2-VL-2B-Instruct")
TINY_MODEL = ("Qwen2.5-VL · offline tiny (1.2 M, random weights, CPU)", "uivlm/tiny-qwen2.5-vl")
# Parameters typed into each notebook's parameters cell: a small run, no live MiniWoB++ episodes.
TYPED_PARAMETERS = {
    "01_setup": 'TRAIN_SIZE = 16\nEVAL_SIZE = 4',
    "02_prompting": "N_SAMPLES = 3",
    "03_lora_train": "MAX_STEPS = 50\nBATCH_SIZE = 1",  # two logged losses (logging_steps=25)
    "04_eval": 'LIVE_TASKS = ""',
}
CELL_TIMEOUT_S = 150


def _requirements():
    """Skip (only off CI) when the browser or Playwright is missing; on CI that is a failure."""
    missing = []
    if not CHROMIUM.is_file():
        missing.append(f"Debian's chromium at {CHROMIUM} (`make system-deps` installs it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[dev]')")
    if missing:
        reason = "JupyterLab browser test needs " + " and ".join(missing)
        if ON_CI:
            pytest.fail(reason + " (CI is set, so this is not skipped)")
        pytest.skip(reason)


# -- JupyterLab as a process group, shut down by its process ids ----------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    """All descendants of ``pid`` (from /proc), e.g. the kernels the server started in their own sessions."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, ppid in parents.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class JupyterLab:
    """``python -m jupyter lab`` from this environment, in its own process group, on a temporary root."""

    def __init__(self, root: Path, home: Path):
        self.root, self.port, self.token = root, _free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "JUPYTER_PATH", "JUPYTER_TOKEN")}
        for name, folder in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                             ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                             ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"), ("IPYTHONDIR", "ipython")]:
            (home / folder).mkdir(parents=True, exist_ok=True)
            env[name] = str(home / folder)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        # A machine without the Hub, the same everywhere: the offline tiny models need none, and a Hub model
        # picked in 01 is reported as not available (never downloaded, never found in a personal cache).
        env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(home / "hf-cache"))
        # No "get notified about official Jupyter news?" toast over the notebook (and no fetching it).
        notification = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True, exist_ok=True)
        notification.write_text(json.dumps({"fetchNews": "false"}))
        self.log = (home / "jupyterlab.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
             f"--IdentityProvider.token={self.token}", "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly"]
            + (["--allow-root"] if os.geteuid() == 0 else []),  # CI runs as root
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        self.log_path = Path(self.log.name)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                self.api("GET", "/api/status")
                return
            except OSError:
                time.sleep(0.5)
        self.close()
        raise RuntimeError(f"JupyterLab did not answer in 90 s:\n{self.log_path.read_text()}")

    def api(self, method: str, path: str):
        request = urllib.request.Request(self.url + path, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def page_url(self, path: str, reset: bool = False) -> str:
        """The page of one file; ``reset`` opens it alone (no tabs restored from the workspace)."""
        return f"{self.url}/lab/tree/{path}?{'reset&' if reset else ''}token={self.token}"

    def shut_down_kernels(self) -> None:
        """End the notebooks' sessions and their kernels (what File → Shut Down All Kernels does)."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")
        for kernel in self.api("GET", "/api/kernels"):
            self.api("DELETE", f"/api/kernels/{kernel['id']}")

    def close(self) -> None:
        """Shut the server down (it stops its kernels), then end whatever of ours is left, by process id."""
        pid = self.process.pid
        started = _children(pid)  # kernels run in their own sessions, so the group alone would miss them
        if self.process.poll() is None:
            try:
                self.api("POST", "/api/shutdown")
                self.process.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is None:
                try:
                    os.killpg(pid, sig)
                except ProcessLookupError:
                    pass
            for child in started:
                if _alive(child):
                    try:
                        os.kill(child, sig)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (self.process.poll() is None
                                                   or any(_alive(c) for c in started)):
                time.sleep(0.2)
        self.process.wait(timeout=10)
        self.log.close()
        self.leftover = [c for c in started if _alive(c)]


# -- driving a notebook in JupyterLab -------------------------------------------------------------------
class Notebook:
    """The notebook open in the page: cells by index (all cells, markdown included), run and wait."""

    def __init__(self, page, name: str, shots: Path):
        self.page, self.name, self.shots = page, name, shots
        self.panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        self.cells = self.panel.locator(".jp-Notebook .jp-Cell")

    def cell(self, index: int):
        return self.cells.nth(index)

    def prompts(self) -> list[str | None]:
        """Per cell: the input prompt of a code cell ('[3]:', '[*]:', '[ ]:'), None for markdown."""
        return self.cells.evaluate_all(
            "cells => cells.map(c => c.classList.contains('jp-CodeCell') ? "
            "(c.querySelector('.jp-InputPrompt')?.textContent || '').trim() : null)")

    def wait_ready(self, timeout: float = 90) -> None:
        """Wait for the notebook and its kernel (idle, and no dialog for 1.5 s). JupyterLab may ask which
        kernel to start: a person takes the notebook's own (Python 3), so does this."""
        self.panel.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
        dialog = self.page.locator(".jp-Dialog", has_text="Select Kernel")
        indicator = self.panel.locator(".jp-Notebook-ExecutionIndicator")
        deadline, idle_since = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            if dialog.count():
                dialog.get_by_role("button", name="Select").click()
                idle_since = None
            elif indicator.count() and indicator.first.get_attribute("data-status") == "idle":
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= 1.5:
                    return
            else:
                idle_since = None
            time.sleep(0.25)
        self.screenshot("no_kernel")
        raise AssertionError(f"{self.name}: the kernel was not idle after {timeout} s")

    def menu(self, top: str, item: str) -> None:
        self.page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(f"^{top}$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).first.click()

    def select(self, index: int) -> None:
        """Select a cell the way a person does: a click into its left gutter (command mode)."""
        self.page.keyboard.press("Escape")
        self.cell(index).scroll_into_view_if_needed()
        self.cell(index).locator(".jp-InputPrompt").click()

    def type_into(self, index: int, text: str) -> None:
        """Append lines at the end of a code cell's editor."""
        editor = self.cell(index).locator(".cm-content")
        editor.click()
        self.page.keyboard.press("Control+End")
        for line in text.splitlines():
            self.page.keyboard.press("Enter")
            self.page.keyboard.press("Home")  # no carried-over indentation
            self.page.keyboard.insert_text(line)
        self.page.keyboard.press("Escape")

    def last_count(self) -> int:
        return max([int(m.group(1)) for p in self.prompts() if p and (m := re.search(r"\[(\d+)\]", p))], default=0)

    def wait_executed(self, indices, after: int = 0, timeout: float = CELL_TIMEOUT_S) -> None:
        """Wait until every code cell in ``indices`` ran (execution count above ``after``) and nothing runs."""
        deadline, idle_polls = time.monotonic() + timeout, 0
        while True:
            prompts = self.prompts()
            busy = any(p and "*" in p for p in prompts)
            counts = {i: (int(m.group(1)) if prompts[i] and (m := re.search(r"\[(\d+)\]", prompts[i])) else 0)
                      for i in indices if prompts[i] is not None}
            if not busy and all(c > after for c in counts.values()):
                return
            idle_polls = 0 if busy else idle_polls + 1
            if idle_polls > 20 or time.monotonic() > deadline:  # stopped on an error, or too slow
                self.screenshot("failed")
                pending = [i for i, c in counts.items() if c <= after]
                raise AssertionError(f"{self.name}: cells {pending} did not run (prompts {prompts}); "
                                     f"outputs:\n{self.error_text()}")
            time.sleep(0.5)

    def error_text(self) -> str:
        errors = self.panel.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        return "\n".join(t[-1500:] for t in errors.all_text_contents() if "Error" in t or "Traceback" in t)

    def run_all(self) -> None:
        before = self.last_count()
        self.menu("Run", "Run All Cells")
        self.wait_executed([i for i, p in enumerate(self.prompts()) if p is not None], after=before)

    def run_from(self, index: int) -> None:
        before = self.last_count()
        self.select(index)
        self.menu("Run", "Run Selected Cell and All Below")
        self.wait_executed([i for i, p in enumerate(self.prompts()) if p is not None and i >= index], after=before)

    def output_images(self, index: int) -> list[dict]:
        """Rendered ``<img>`` outputs of a cell: natural and on-screen size, and ``src`` kind."""
        cell = self.cell(index)
        cell.scroll_into_view_if_needed()
        images = cell.locator(".jp-OutputArea-output img")
        images.first.wait_for(timeout=30_000)
        self.page.wait_for_function("els => els.every(e => e.complete)", arg=images.element_handles(),
                                    timeout=30_000)
        return images.evaluate_all("els => els.map(e => ({natural: [e.naturalWidth, e.naturalHeight], "
                                   "shown: [e.getBoundingClientRect().width, e.getBoundingClientRect().height], "
                                   "src: e.src.slice(0, 30)}))")

    def screenshot(self, label: str) -> Path:
        path = self.shots / f"{self.name}_{label}.png"
        self.page.screenshot(path=str(path))
        return path


def _open(page, lab: JupyterLab, name: str, shots: Path) -> Notebook:
    page.goto(lab.page_url(f"notebooks/{name}.ipynb", reset=True))
    notebook = Notebook(page, name, shots)
    notebook.wait_ready()
    return notebook


def _parameters_cell(name: str) -> int:
    cells = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())["cells"]
    return next(i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", []))


def _cell_index(name: str, needle: str) -> int:
    cells = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())["cells"]
    return next(i for i, c in enumerate(cells) if needle in "".join(c["source"]))


def _settled_change(read, old: str, timeout: float, what: str) -> str:
    """Wait until ``read()`` differs from ``old`` and then stays the same for a second (widget updates
    arrive as several messages), and return it."""
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        text = read()
        if text != last:
            last, since = text, time.monotonic()
        elif text and text != old and time.monotonic() - since >= 1.0:
            return text
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last seen: {last!r}")


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -- the scenario ---------------------------------------------------------------------------------------
def _setup_notebook(page, lab, shots, seen):
    nb = _open(page, lab, "01_setup", shots)
    nb.type_into(_parameters_cell("01_setup"), TYPED_PARAMETERS["01_setup"])
    nb.run_all()
    picker_index = _cell_index("01_setup", "widgets.SetupWidgets(")
    picker_cell = nb.cell(picker_index)
    picker_cell.scroll_into_view_if_needed()
    outputs = picker_cell.locator(".jp-OutputArea-output")
    dropdown = picker_cell.locator(".widget-dropdown select")
    dropdown.wait_for(timeout=30_000)
    estimate = outputs.filter(has_text="Training memory estimate")
    notice = picker_cell.locator(".uivlm-availability")
    seen["labels"] = [t.strip() for t in picker_cell.locator(".widget-label").all_text_contents() if t.strip()]
    seen["options"] = [t.replace("\xa0", " ") for t in dropdown.locator("option").all_text_contents()]
    seen["estimate_start"] = estimate.text_content()
    seen["notice_start"] = notice.count()

    # A real Hub model: the estimate grows, and the picker says it cannot load here.
    dropdown.select_option(label=HUB_MODEL[0])
    seen["estimate_hub"] = _settled_change(estimate.text_content, seen["estimate_start"], 30,
                                           "the memory estimate to change after picking " + HUB_MODEL[1])
    seen["notice_hub"] = _wait_for(lambda: notice.count() and notice.text_content(), 30,
                                   "the availability notice for " + HUB_MODEL[1])
    nb.screenshot("hub_model_not_available")

    # The offline tiny Qwen2.5-VL and the json action format.
    dropdown.select_option(label=TINY_MODEL[0])
    seen["estimate_tiny"] = _settled_change(estimate.text_content, seen["estimate_hub"], 30,
                                            "the memory estimate to change after picking " + TINY_MODEL[1])
    _wait_for(lambda: notice.count() == 0, 30, "the availability notice to go")
    json_button = picker_cell.locator(".widget-toggle-button", has_text=re.compile("^json$"))
    json_button.click()
    _wait_for(lambda: "mod-active" in (json_button.get_attribute("class") or ""), 30, "the json toggle")
    seen["notice_tiny"] = notice.count()

    nb.run_from(picker_index + 1)  # load the model, estimate, data and save the configuration again
    # The picker cell at the top of the view: the code, the pickers and the memory estimate.
    picker_cell.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    seen["setup_screenshot"] = nb.screenshot("pickers")
    seen["config"] = yaml.safe_load((lab.root / "runs" / "default" / "config.yaml").read_text())
    seen["setup_results"] = json.loads((lab.root / "runs" / "default" / "results" / "01_setup.json").read_text())
    lab.shut_down_kernels()


def _run_and_capture(page, lab, shots, seen, notebook: str, images_key: str, marker: str, shot: str):
    """Type the notebook's test parameters, run it all, keep the images of the cell holding ``marker``."""
    nb = _open(page, lab, notebook, shots)
    nb.type_into(_parameters_cell(notebook), TYPED_PARAMETERS[notebook])
    nb.run_all()
    seen[images_key] = nb.output_images(_cell_index(notebook, marker))
    nb.screenshot(shot)
    lab.shut_down_kernels()


def _prompting_notebook(page, lab, shots, seen):
    _run_and_capture(page, lab, shots, seen, "02_prompting", "prompting_images", "viz.gallery(", "overlays")


def _training_notebook(page, lab, shots, seen):
    _run_and_capture(page, lab, shots, seen, "03_lora_train", "training_images", "train.train(", "loss_curve")


def _eval_notebook(page, lab, shots, seen):
    nb = _open(page, lab, "04_eval", shots)
    nb.type_into(_parameters_cell("04_eval"), TYPED_PARAMETERS["04_eval"])
    nb.run_all()
    seen["gallery_images"] = nb.output_images(_cell_index("04_eval", "evaluate.best_and_worst("))
    browser_cell = nb.cell(_cell_index("04_eval", "widgets.PredictionBrowser("))
    browser_cell.scroll_into_view_if_needed()
    image = browser_cell.locator("img.widget-image")
    image.wait_for(timeout=30_000)
    position = browser_cell.get_by_text(re.compile(r"^\s*\d+ / \d+\s*$"))
    seen["browser_before"] = {"src": image.get_attribute("src"), "position": position.text_content(),
                              "natural": image.evaluate("e => [e.naturalWidth, e.naturalHeight]")}
    browser_cell.get_by_role("button", name="next ▶").click()
    _wait_for(lambda: image.get_attribute("src") != seen["browser_before"]["src"], 30,
              "the prediction browser's image to change after next ▶")
    _wait_for(lambda: image.evaluate("e => e.complete && e.naturalWidth > 0"), 30, "the next image to load")
    seen["browser_after"] = {"src": image.get_attribute("src"), "position": position.text_content(),
                             "natural": image.evaluate("e => [e.naturalWidth, e.naturalHeight]")}
    nb.screenshot("prediction_browser")
    _episode_viewer(nb, seen)
    lab.shut_down_kernels()


def _episode_viewer(nb, seen):
    """Page the episode viewer and switch its failed-only filter (the held-out screens are one-step episodes)."""
    cell = nb.cell(_cell_index("04_eval", "episode_viewer.EpisodeViewer("))
    cell.scroll_into_view_if_needed()
    counter = cell.get_by_text(re.compile(r"^\s*episode \d+ / \d+\s*$"))
    counter.wait_for(timeout=30_000)
    strip = cell.locator(".uivlm-episode-step img")
    seen["episodes_first"] = {"counter": counter.text_content(), "images": strip.count()}
    cell.get_by_role("button", name="next episode ▶").click()
    _wait_for(lambda: counter.text_content() != seen["episodes_first"]["counter"], 30,
              "the episode counter to move after next episode ▶")
    seen["episodes_next"] = {"counter": counter.text_content(), "images": strip.count()}
    failed_only = cell.get_by_role("checkbox", name="failed episodes only")
    failed_only.check()
    _wait_for(failed_only.is_checked, 30, "the failed-only box to be ticked")
    time.sleep(1.0)  # the kernel re-renders the filmstrip after the change event
    seen["episodes_failed"] = {"counter": counter.text_content(), "text": cell.inner_text()}


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory):
    """Everything a person does in JupyterLab with 01-04; returns what the browser showed."""
    _requirements()
    from playwright.sync_api import sync_playwright

    base = tmp_path_factory.mktemp("jupyterlab")
    root, shots = base / "root", base / "screenshots"
    shots.mkdir()
    shutil.copytree(NOTEBOOKS_DIR, root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    print(f"\nJupyterLab browser test: screenshots in {shots}")
    seen = {"root": root, "shots": shots, "timings": {}}
    started = time.monotonic()
    lab = JupyterLab(root, base / "jupyter")
    seen["timings"]["lab_start"] = round(time.monotonic() - started, 1)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(30_000)
                for step in (_setup_notebook, _prompting_notebook, _training_notebook, _eval_notebook):
                    begin = time.monotonic()
                    step(page, lab, shots, seen)
                    seen["timings"][step.__name__.strip("_")] = round(time.monotonic() - begin, 1)
            finally:
                browser.close()
    finally:
        lab.close()
    seen["leftover_processes"] = lab.leftover
    seen["timings"]["total"] = round(time.monotonic() - started, 1)
    print(f"JupyterLab browser test timings (s): {seen['timings']}")
    if os.environ.get("UIVLM_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT_DOC.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(seen["setup_screenshot"], SCREENSHOT_DOC)
    return seen


def _large(image: dict, width: int = 150, height: int = 100) -> bool:
    return (image["natural"][0] >= width and image["natural"][1] >= height
            and image["shown"][0] >= width and image["shown"][1] >= height)


# -- what the person saw --------------------------------------------------------------------------------
def test_setup_pickers_are_labelled_and_grouped_by_family(lab_run):
    assert any(label.startswith("Model") for label in lab_run["labels"])
    assert "Action format" in lab_run["labels"]
    assert HUB_MODEL[0] in lab_run["options"] and TINY_MODEL[0] in lab_run["options"]
    assert all(" · " in option for option in lab_run["options"])
    assert lab_run["notice_start"] == 0  # the default (offline tiny on the CPU) is usable here


def test_memory_estimate_follows_the_model_picker(lab_run):
    start, hub, tiny = lab_run["estimate_start"], lab_run["estimate_hub"], lab_run["estimate_tiny"]
    assert start != hub and hub != tiny
    assert "Training memory estimate" in hub and "GiB" in hub

    def total(text):  # the fits / won't-fit line: "... needs ~15.7 GiB ..."
        return float(re.search(r"~([\d.]+) GiB", text).group(1))

    assert total(hub) > 10 * total(start)  # 2B parameters against the tiny model's 1 M


def test_a_model_that_cannot_load_here_says_so(lab_run):
    assert "Qwen/Qwen2-VL-2B-Instruct is not available here" in lab_run["notice_hub"]
    assert "HF_HUB_OFFLINE" in lab_run["notice_hub"]
    assert "offline tiny" in lab_run["notice_hub"]
    assert lab_run["notice_tiny"] == 0


def test_picker_choices_reach_the_saved_run_configuration(lab_run):
    model = lab_run["config"]["model"]
    assert model["name"] == TINY_MODEL[1]
    assert model["action_format"] == "json"
    assert lab_run["config"]["data"]["train_size"] == 16  # the typed parameters
    assert lab_run["setup_results"]["model"] == TINY_MODEL[1]
    assert lab_run["setup_results"]["action_format"] == "json"


def test_overlay_galleries_render_in_the_notebooks(lab_run):
    assert lab_run["prompting_images"] and all(map(_large, lab_run["prompting_images"]))
    assert len(lab_run["gallery_images"]) == 2 and all(map(_large, lab_run["gallery_images"]))
    assert lab_run["training_images"] and _large(lab_run["training_images"][-1])  # live loss curve


def test_prediction_browser_pages_to_the_next_prediction(lab_run):
    before, after = lab_run["browser_before"], lab_run["browser_after"]
    assert before["src"] and after["src"] and before["src"] != after["src"]
    assert before["natural"][0] >= 100 and after["natural"][0] >= 100
    assert before["position"].startswith("1 / ") and after["position"].startswith("2 / ")


def test_episode_viewer_pages_and_filters_in_the_browser(lab_run):
    first, after, failed = lab_run["episodes_first"], lab_run["episodes_next"], lab_run["episodes_failed"]
    total = int(first["counter"].split("/")[1])
    assert first["counter"].strip() == f"episode 1 / {total}" and after["counter"].strip() == f"episode 2 / {total}"
    assert first["images"] >= 1 and after["images"] >= 1
    if "no failed episodes" in failed["text"]:
        assert failed["counter"].strip() == "episode 0 / 0"
    else:  # only failed episodes remain: the shown one is marked failed
        assert int(failed["counter"].split("/")[1]) <= total
        assert "episode failed" in failed["text"] and "✗" in failed["text"]


def test_screenshots_were_saved(lab_run):
    shots = sorted(p.name for p in lab_run["shots"].glob("*.png"))
    assert {"01_setup_pickers.png", "02_prompting_overlays.png", "04_eval_prediction_browser.png"} <= set(shots)
    assert lab_run["setup_screenshot"].stat().st_size > 20_000


def test_nothing_was_left_running(lab_run):
    assert lab_run["leftover_processes"] == []


# -- the pictures the notebooks saved -------------------------------------------------------------------
FIGURES = {
    "memory_estimate.png": "01: training memory by component",
    "prompting_overlays.png": "02: predicted clicks drawn on screenshots",
    "loss_curve.png": "03: training loss",
    "accuracy_by_type.png": "04: per-type accuracy bars",
    "accuracy_by_candidates.png": "04: accuracy by number of candidates against the instruction-blind baseline",
    "gallery_best.png": "04: best predictions",
    "gallery_worst.png": "04: worst predictions",
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_saved_figures_are_real_pictures(lab_run, name):
    from PIL import Image

    path = lab_run["root"] / "runs" / "default" / "figures" / name
    assert path.is_file(), f"{FIGURES[name]} was not saved to {path}"
    assert path.stat().st_size > 5_000
    with Image.open(path) as image:
        image.load()
        width, height = image.size
        rgb = image.convert("RGB")
    assert width >= 300 and height >= 200, (name, image.size)
    colours = rgb.getcolors(maxcolors=1 << 20)
    assert len(colours) >= 16, f"{name}: only {len(colours)} distinct colours"
    # not one flat colour with a few specks: the most common colour covers less than 97% of the pixels
    assert max(count for count, _ in colours) < 0.97 * width * height
