"""A Dagster webserver on a materialized demo instance, and a headless Chromium to look at it.

The browser is Debian's ``chromium`` driven through Debian's ``chromium-driver``
(installed by ``.ci/run``); nothing is downloaded. Without them the UI tests skip.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from snake_assets.runner import RunSettings, run_pipeline
from snake_assets_tests.conftest import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / ".test_artifacts" / "ui"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--window-size=1600,1000",
)
LOCATION_QUERY = (
    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
    "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
)


def browser_missing() -> str:
    """Why the UI tests cannot run here, or ``""``."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    return f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver; .ci/run does)" if missing else ""


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory, demo_release, tiny_backbone):
    """Env of a persistent instance (temp ``DAGSTER_HOME``) on which the demo graph is materialized."""
    root = tmp_path_factory.mktemp("ui_demo")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    settings = RunSettings(data_dir=str(demo_release), home=str(root / "lake"), backbone=str(tiny_backbone),
                           device="cpu", batch_size=16)
    mp = pytest.MonkeyPatch()
    for key in ("SNAKE_DATA_DIR", "SNAKE_HOME", "SNAKE_BACKBONE", "SNAKE_DEVICE", "SNAKE_BATCH_SIZE"):
        mp.setenv(key, "")  # recorded, so run_pipeline's export is undone after the module
    with dg.DagsterInstance.from_config(str(home)) as instance:
        summary = run_pipeline(settings, instance)
    env = {k: os.environ[k] for k in ("SNAKE_DATA_DIR", "SNAKE_HOME", "SNAKE_BACKBONE", "SNAKE_DEVICE", "SNAKE_BATCH_SIZE")}
    yield {"env": {**env, "DAGSTER_HOME": str(home)}, "summary": summary, "lake": Path(env["SNAKE_HOME"])}
    mp.undo()


def _post_graphql(base: str, query: str) -> dict:
    req = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _wait_until_serving(base: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Wait for ``/server_info``, then for the code location to finish loading (failing on a load error)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            urllib.request.urlopen(f"{base}/server_info", timeout=2).read()
            entries = _post_graphql(base, LOCATION_QUERY)["data"]["workspaceOrError"]["locationEntries"]
        except OSError:
            time.sleep(0.5)
            continue
        errors = [e for e in entries if e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"] == "PythonError"]
        if errors:
            raise RuntimeError(f"code location failed to load: {errors[0]['locationOrLoadError']['message']}")
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            return
        time.sleep(0.5)
    raise TimeoutError(f"dagster-webserver not serving after {timeout:.0f} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def webserver(demo_home, tmp_path_factory):
    """Base URL of ``dagster-webserver`` on 127.0.0.1 against the demo instance; stopped by its pid."""
    port = free_port()
    log = tmp_path_factory.mktemp("webserver") / "webserver.log"
    exe = Path(sys.executable).parent / "dagster-webserver"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(exe), "-h", "127.0.0.1", "-p", str(port), "-w", str(REPO / "workspace.yaml")],
            cwd=REPO, env={**os.environ, **demo_home["env"], "DAGSTER_DISABLE_TELEMETRY": "1"},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base, proc, log)
        _post_graphql(base, "mutation { setNuxSeen }")  # no "Join the Dagster community" dialog over the pages
        yield base
    finally:
        stop_process(proc, timeout_s=30)
        try:  # the code server it spawned lives in the session we started for it
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Debian's chromedriver (no browser or driver download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def screenshot(browser, capsys):
    """``screenshot(name)`` saves the browser window under ``.test_artifacts/ui/`` and prints the path."""

    def save(name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        browser.save_screenshot(str(path))
        with capsys.disabled():
            print(f"\nscreenshot: {path}")
        return path

    return save
