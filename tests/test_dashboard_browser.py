"""The dashboard in a real browser: headless Chromium (Debian's chromium and chromium-driver,
see .ci/run) driven by selenium, against a live LocalCluster. Without the token only the login
page shows; after login each page shows what a person would see; a killed actor turns DEAD
with its cause, and a new node appears, without a reload. One browser for the module; a
screenshot of each page goes to a temporary directory (and to $ACTORFLOW_DASHBOARD_SCREENSHOTS
when set, to refresh the README's)."""

from __future__ import annotations

import os
import shutil

import pytest
from dashboard_helpers import connected, populated_cluster

import actorflow

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium reaches for the network at start-up, which a closed network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,800",
]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip(
        f"no browser: {CHROMIUM} and {CHROMEDRIVER} are needed (Debian's chromium and "
        f"chromium-driver packages)",
        allow_module_level=True,
    )

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def dash(tmp_path_factory):
    yield from populated_cluster(str(tmp_path_factory.mktemp("browsersession")))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screenshots")

    def shoot(browser, name):
        browser.save_screenshot(str(folder / f"{name}.png"))
        extra = os.environ.get("ACTORFLOW_DASHBOARD_SCREENSHOTS")
        if extra:
            os.makedirs(extra, exist_ok=True)
            browser.save_screenshot(os.path.join(extra, f"{name}.png"))
        return folder / f"{name}.png"

    return shoot


def wait(browser, predicate, timeout=30, message=""):
    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(
        lambda b: predicate(), message=message
    )


def text_of(browser, selector):
    """The text shown by the first element that matches (read in one step: the live pages
    redraw their tables)."""
    script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';"
    return browser.execute_script(script, selector)


@pytest.mark.timeout(60)
def test_without_the_token_only_the_login_page_shows(dash, browser, shots):
    cluster, _, ids = dash
    url = cluster.dashboard_url
    browser.get(url + "/actors")
    assert browser.current_url.startswith(url + "/login")
    assert browser.find_element(By.ID, "token").get_attribute("type") == "password"
    assert "greeter" not in browser.page_source and ids["greeter"] not in browser.page_source
    shots(browser, "login")
    browser.get(url + "/api/actors")
    assert "not logged in" in browser.find_element(By.TAG_NAME, "body").text
    browser.get(url + "/login")
    browser.find_element(By.ID, "token").send_keys("00" * 32)
    browser.find_element(By.ID, "login").click()
    wait(browser, lambda: browser.find_elements(By.CLASS_NAME, "error"))  # the answer's page
    assert "not the cluster's token" in browser.find_element(By.CLASS_NAME, "error").text
    assert browser.current_url.startswith(url + "/login")


def _log_in(dash, browser):
    cluster, token, _ = dash
    browser.get(cluster.dashboard_url + "/login")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "login").click()
    wait(browser, lambda: browser.current_url == cluster.dashboard_url + "/")


@pytest.mark.timeout(120)
def test_each_page_shows_the_cluster(dash, browser, shots):
    cluster, _, ids = dash
    url = cluster.dashboard_url
    _log_in(dash, browser)
    head = cluster.head["node_id"]

    # Overview: the nodes with their resources used/total, the object store.
    row = f'tr[data-node-id="{head}"]'
    wait(browser, lambda: "ALIVE" in text_of(browser, row), message="the head's row")
    assert "CPU" in text_of(browser, row) and "/ 2" in text_of(browser, row)
    assert "Object store" in browser.find_element(By.ID, "content").text
    assert "live" in browser.find_element(By.ID, "live").text
    shots(browser, "overview")

    # Actors: state, restarts, node, pid, a link to the log.
    browser.get(url + "/actors")
    row = f'tr[data-actor-id="{ids["greeter"]}"]'
    wait(browser, lambda: "greeter" in text_of(browser, row))
    assert "ALIVE" in text_of(browser, row + " td.state") and head[:12] in text_of(browser, row)
    shots(browser, "actors")
    browser.find_element(By.CSS_SELECTOR, row + " a").click()
    wait(browser, lambda: "hello, dashboard" in text_of(browser, "#log-text"))
    assert browser.current_url == url + f"/logs?actor={ids['greeter']}"
    wait(browser, lambda: "worker-" in text_of(browser, "#content table"))
    shots(browser, "logs")

    # Tasks, filtered by state with the form.
    browser.get(url + "/tasks")
    wait(browser, lambda: "square" in text_of(browser, "#content table"))
    assert "FINISHED" in text_of(browser, "#content table")
    browser.find_element(By.CSS_SELECTOR, 'select[name="state"] option[value="FAILED"]').click()
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    wait(browser, lambda: "square" not in text_of(browser, "#content table"))
    table = text_of(browser, "#content table")
    assert "fails" in table and "FAILED" in table and "TASK_EXECUTION_EXCEPTION" in table
    assert browser.current_url.endswith("/tasks?state=FAILED")
    shots(browser, "tasks")

    # Jobs: the driver that made all this, finished.
    browser.get(url + "/jobs")
    wait(browser, lambda: "SUCCEEDED" in text_of(browser, "#content table"))

    # Objects: a large one a connected driver holds.
    with connected(cluster):
        ref = actorflow.put(b"x" * (3 << 20))
        browser.get(url + "/objects")
        row = f'tr[data-object-id="{ref.hex()}"]'
        wait(browser, lambda: "3.0 MiB" in text_of(browser, row), message="the object's row")
        assert "shared" in text_of(browser, row)
        shots(browser, "objects")
        del ref

    # Supervision: the tree, the child that was killed and restarted, its history.
    browser.get(url + "/supervision")
    box = f'section[data-supervisor-id="{ids["supervisor"]}"]'
    wait(browser, lambda: "app" in text_of(browser, box))
    db = text_of(browser, box + ' tr[data-child="db"]').split("\t")
    assert db[:4] == ["db", "permanent", "running", "1"] and db[4] == ids["db"][:12]
    assert "restarted db" in text_of(browser, box + " .history")
    shots(browser, "supervision")

    # Timeline: a bar per task attempt that ran, and the trace to download.
    browser.get(url + "/timeline")
    wait(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, ".tl-track span")) >= 5)
    link = browser.find_element(By.LINK_TEXT, "Download the Chrome trace (JSON)")
    assert link.get_attribute("href") == url + "/api/timeline?download=1"
    shots(browser, "timeline")


@pytest.mark.timeout(90)
def test_a_killed_actor_turns_dead_live(dash, browser, shots):
    cluster, _, ids = dash
    browser.get(cluster.dashboard_url + "/actors")
    if "/login" in browser.current_url:
        _log_in(dash, browser)
        browser.get(cluster.dashboard_url + "/actors")
    row = f'tr[data-actor-id="{ids["doomed"]}"]'
    wait(browser, lambda: "ALIVE" in text_of(browser, row + " td.state"))
    browser.execute_script("window.notReloaded = true;")
    with connected(cluster):
        actorflow.kill(actorflow.get_actor("doomed"))
    wait(browser, lambda: "DEAD" in text_of(browser, row + " td.state"), message="DEAD")
    assert "killed" in text_of(browser, row + " td.cause")
    assert browser.execute_script("return window.notReloaded === true;")
    shots(browser, "actor-dead")


@pytest.mark.timeout(90)
def test_a_new_node_appears_live(dash, browser, shots):
    cluster, _, _ = dash
    browser.get(cluster.dashboard_url + "/")
    if "/login" in browser.current_url:
        _log_in(dash, browser)
    wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "tr[data-node-id]"))
    browser.execute_script("window.notReloaded = true;")
    node = cluster.add_node(num_cpus=1, resources={"extra": 3})
    row = f'tr[data-node-id="{node["node_id"]}"]'
    wait(browser, lambda: "ALIVE" in text_of(browser, row), message="the new node's row")
    assert "extra 0 / 3" in text_of(browser, row)
    assert browser.execute_script("return window.notReloaded === true;")
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr[data-node-id]")) == 2
    shots(browser, "overview-two-nodes")
