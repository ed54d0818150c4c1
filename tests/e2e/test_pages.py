"""The pages people open, in a real browser (Debian's headless Chromium through Selenium), on the stack
the demo's loop ran on: predict's /docs, the monitor's /view_report, the Evidently history dashboard and
the MLflow page of the champion's run. Each must render its content with no error on the browser console;
screenshots are saved under the test's temporary directory."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from churnflow.monitoring import history
from churnflow.monitoring.models import CheckStatus

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
# MLflow 3.x's UI asks the server who the user is; a server run without its auth app (ours) answers 404.
# That probe is MLflow's own and harmless; any other console error fails the test.
MLFLOW_AUTH_PROBE = (
    "/ajax-api/2.0/mlflow/users/current - Failed to load resource: the server responded with a status of 404"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium that keeps its console log."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "no Chromium with its WebDriver on PATH: `make browser` installs Debian's chromium and "
            "chromium-driver (it needs apt-get as root)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2400"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def visit(browser: WebDriver, url: str, texts: tuple[str, ...], shot: Path) -> list[dict]:
    """Open `url`, wait until the page shows every one of `texts`, save a screenshot; the console's errors."""
    browser.get_log("browser")  # start with an empty log
    browser.get(url)
    try:
        WebDriverWait(browser, 60).until(lambda b: all(t in b.find_element(By.TAG_NAME, "body").text for t in texts))
    finally:
        browser.save_screenshot(str(shot))
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def test_predict_docs_render_the_api(demo_run, browser, shots):
    url = f"{demo_run.result.urls['API docs']}"
    assert visit(browser, url, ("ChurnFlow predict", "/predict/batch", "Customer"), shots / "docs.png") == []


def test_view_report_lists_the_checks_and_shows_the_drift_report(demo_run, browser, shots):
    drifted = [c for c in demo_run.result.checks if c.status is CheckStatus.DRIFT][-1]
    url = f"{demo_run.result.urls['drift reports']}?check={drifted.check_id}"
    errors = visit(
        browser, url, ("ChurnFlow drift checks", "rules fired", f"Report {drifted.check_id}"), shots / "r.png"
    )
    assert errors == []
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    try:
        WebDriverWait(browser, 60).until(lambda b: "Drift is detected for" in b.find_element(By.TAG_NAME, "body").text)
        assert "churn_probability" in browser.find_element(By.TAG_NAME, "body").text
    finally:
        browser.switch_to.default_content()
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_evidently_dashboard_plots_the_checks_over_time(demo_run, browser, shots):
    url = demo_run.result.urls["drift history"]
    titles = ("Drift share over time", "Per-feature drift scores", "Predicted churn rate", "Calibration")
    assert visit(browser, url, titles, shots / "dashboard.png") == []
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg")) >= len(titles)

    # what the panels plot: every decided check of the loop, with the drift share it reported
    base, _, project = url.rpartition("/projects/")
    wanted = {"metric": history.CHECK_VALUE, "metric_labels": {"name": "drift_share"}, "tags": [], "metadata": {}}
    reply = httpx.post(f"{base}/api/v2/snapshots/{project}/data_series_batch", json={"series_filter": [wanted]})
    [series] = reply.raise_for_status().json()["series"]
    decided = [c.drift.drift_share for c in demo_run.result.checks if c.drift is not None]
    assert [round(v, 6) for v in series["values"][: len(decided)]] == [round(v, 6) for v in decided]


def test_mlflow_shows_the_champions_run(demo_run, browser, shots):
    url = demo_run.result.urls["champion run"]
    run_id = url.rsplit("/", 1)[-1]
    try:
        errors = visit(browser, url, ("roc_auc",), shots / "mlflow.png")
    except TimeoutException:
        pytest.fail(f"the MLflow run page did not show the run's metrics; see {shots / 'mlflow.png'}")
    assert [e for e in errors if MLFLOW_AUTH_PROBE not in e["message"]] == []
    assert run_id in browser.find_element(By.TAG_NAME, "body").text
