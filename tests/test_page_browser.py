"""The page at GET /, driven in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, which
.ci/run installs) by Selenium, as a person would use it: it lists the models, shows the chosen one's inputs,
sends the example and shows the predictions, shows the server's message for a bad request, and loads nothing
from anywhere but the server (Chromium's own network log, through the DevTools protocol, is checked)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
from helpers import Server, free_port, wait_until_ready

import modelpack

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the test extra installs selenium; without it the browser tests skip, saying so
    webdriver = None

WAIT = 20  # seconds for the page to do something: generous, the machine is shared


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        return f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); .ci/run installs them"
    if webdriver is None:
        return "needs selenium (the test extra)"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with its network and console logged. The driver is given by path, so Selenium Manager
    never looks for one on the network; ``--no-sandbox`` because CI runs as root."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-default-apps", "--disable-extensions",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    log = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER), log_output=str(log)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver, url: str) -> None:
    driver.get_log("performance")  # drop what earlier tests logged
    driver.get_log("browser")
    driver.get(url)
    WebDriverWait(driver, WAIT).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))


def by_id(driver, element_id: str):
    return driver.find_element(By.ID, element_id)


def input_rows(driver) -> list[list[str]]:
    return [[cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")]
            for row in driver.find_elements(By.CSS_SELECTOR, "#inputs-body tr")]


def send_and_read_predictions(driver) -> list[list[str]]:
    """Click Send and wait for the predictions table; its rows (without the row number)."""
    driver.execute_script("document.getElementById('predictions-box').hidden = true")  # so a new answer shows
    by_id(driver, "send-button").click()
    WebDriverWait(driver, WAIT).until(
        lambda d: by_id(d, "predictions-box").is_displayed() or by_id(d, "error-box").is_displayed())
    assert by_id(driver, "predictions-box").is_displayed(), by_id(driver, "error-box").text
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in driver.find_elements(By.CSS_SELECTOR, "#predictions-body tr")]


def type_request(driver, text: str) -> None:
    box = by_id(driver, "request-body")
    box.clear()
    box.send_keys(text)


def send_and_read_error(driver) -> tuple[str, str, str]:
    driver.execute_script("document.getElementById('error-box').hidden = true")
    by_id(driver, "send-button").click()
    WebDriverWait(driver, WAIT).until(lambda d: by_id(d, "error-box").is_displayed())
    assert not by_id(driver, "predictions-box").is_displayed()
    return by_id(driver, "error-status").text, by_id(driver, "error-code").text, by_id(driver, "error-message").text


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for since the last call (Chromium's DevTools Network events)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def assert_only_loopback(driver, server: Server) -> set[str]:
    """Every request went to ``server`` on the loopback; returns their paths."""
    urls = requested_urls(driver)
    assert urls, "no request logged"
    origin = urlsplit(server.url)
    for url in urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname, parts.port) == ("http", "127.0.0.1", origin.port), url
    return {urlsplit(url).path for url in urls}


def assert_console_clean(driver, expected_statuses: tuple[int, ...] = ()) -> None:
    """No error in the console (a Content-Security-Policy violation, a script error) but the failed responses
    the test asked for (Chromium logs every 4xx a fetch receives)."""
    allowed = tuple(f"status of {status}" for status in expected_statuses)
    errors = [e["message"] for e in driver.get_log("browser")
              if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)]
    assert not errors, errors


# ---------------------------------------------------------------- models, trained here


def split_frame(example: dict) -> pd.DataFrame:
    split = example["dataframe_split"]
    return pd.DataFrame(split["data"], columns=split["columns"])


@pytest.fixture(scope="module")
def iris_model_dir(tmp_path_factory) -> Path:
    """A classifier with string labels on named double columns, saved with an input example."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris(as_frame=True)
    X = iris.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    y = iris.target.map(dict(enumerate(iris.target_names)))
    path = tmp_path_factory.mktemp("page") / "iris"
    modelpack.save_model(LogisticRegression(max_iter=1000).fit(X, y), path, input_example=X.iloc[[0, 60, 120]])
    return path


@pytest.fixture(scope="module")
def tensor_model_dir(tmp_path_factory) -> Path:
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(3)
    A = rng.normal(size=(50, 3))
    path = tmp_path_factory.mktemp("page") / "tensor"
    modelpack.save_model(RandomForestRegressor(n_estimators=4, random_state=0).fit(A, A @ [1.0, 2.0, 3.0]), path,
                         input_example=A[:2])
    return path


# ---------------------------------------------------------------- tests


def test_send_the_example_and_see_the_predictions(serve, browser, diabetes_model_dir):
    server = serve(diabetes_model_dir)
    open_page(browser, f"{server.url}/")
    model = modelpack.load_model(diabetes_model_dir)
    columns = [spec.name for spec in model.signature.inputs]

    # the model, its inputs, and the example ready to send
    assert Select(by_id(browser, "model-select")).first_selected_option.text == diabetes_model_dir.name
    assert by_id(browser, "model-flavor").text == "sklearn"
    assert input_rows(browser) == [[name, "double", "required"] for name in columns]
    example = json.loads((diabetes_model_dir / "serving_input_example.json").read_text())
    assert json.loads(by_id(browser, "request-body").get_attribute("value")) == example

    rows = send_and_read_predictions(browser)
    expected = np.asarray(model.predict(split_frame(example)), dtype=float)
    np.testing.assert_allclose([float(row[0]) for row in rows], expected, rtol=1e-12)
    assert by_id(browser, "send-status").text.startswith("200")

    # a request missing a column: the server's 400 and its message, naming the column
    bad = {"dataframe_split": {"columns": columns[1:], "data": [[0.0] * (len(columns) - 1)]}}
    type_request(browser, json.dumps(bad))
    status, code, message = send_and_read_error(browser)
    assert status.startswith("400") and code == "INVALID_PARAMETER_VALUE"
    assert "missing required input columns ['age']" in message

    # text that is no JSON at all: the server says so
    type_request(browser, '{"dataframe_split": ')
    status, code, message = send_and_read_error(browser)
    assert status.startswith("400") and code == "BAD_REQUEST" and "not valid JSON" in message

    # back to the example, and it scores again
    by_id(browser, "reset-button").click()
    assert json.loads(by_id(browser, "request-body").get_attribute("value")) == example
    np.testing.assert_allclose([float(r[0]) for r in send_and_read_predictions(browser)], expected, rtol=1e-12)

    paths = assert_only_loopback(browser, server)
    assert {"/", "/static/page.js", "/static/page.css", "/openapi.json",
            f"/models/{diabetes_model_dir.name}/invocations"} <= paths
    assert_console_clean(browser, expected_statuses=(400,))


def test_several_models_each_with_its_inputs(browser, tmp_path, iris_model_dir, tensor_model_dir):
    port = free_port()
    cmd = [sys.executable, "-m", "modelpack.cli", "serve", "-p", str(port), "--env-manager", "local",
           "-m", f"iris={iris_model_dir}", "-m", f"tensor={tensor_model_dir}"]
    server = wait_until_ready(cmd, port, tmp_path / "server.log", dict(os.environ), 90)
    try:
        open_page(browser, f"{server.url}/")
        select = Select(by_id(browser, "model-select"))
        assert [option.text for option in select.options] == ["iris", "tensor"]
        assert by_id(browser, "load-status").text == "2 models on this server."

        # the classifier: string labels in the table, equal to the model's own predictions
        assert [row[0] for row in input_rows(browser)] == ["sepal_length", "sepal_width", "petal_length",
                                                           "petal_width"]
        example = json.loads(by_id(browser, "request-body").get_attribute("value"))
        expected = modelpack.load_model(iris_model_dir).predict(split_frame(example))
        assert [row[0] for row in send_and_read_predictions(browser)] == list(expected)
        assert by_id(browser, "model-url").text == "POST /models/iris/invocations"

        # the tensor model: its dtype and shape, its own example, its own URL
        select.select_by_visible_text("tensor")
        assert input_rows(browser) == [["(column 0)", "float64", "(-1, 3)"]]
        example = json.loads(by_id(browser, "request-body").get_attribute("value"))
        assert example == json.loads((tensor_model_dir / "serving_input_example.json").read_text())
        expected = modelpack.load_model(tensor_model_dir).predict(np.asarray(example["inputs"]))
        np.testing.assert_allclose([float(r[0]) for r in send_and_read_predictions(browser)], expected, rtol=1e-12)
        assert by_id(browser, "model-url").text == "POST /models/tensor/invocations"

        paths = assert_only_loopback(browser, server)
        assert {"/models/iris/invocations", "/models/tensor/invocations"} <= paths
        assert_console_clean(browser)
    finally:
        assert server.stop() == 0


@pytest.fixture(scope="module")
def odd_outputs_model_dir(tmp_path_factory) -> Path:
    """A custom model without signature or example whose predictions hold NaN and infinities, which the server
    writes as the bare literals NaN / Infinity (as MLflow does) and JavaScript's JSON.parse refuses."""

    class NonFinite(modelpack.PythonModel):
        def predict(self, context, model_input, params=None):
            import numpy as np

            return np.resize(np.array([np.nan, np.inf, -np.inf, 1.5]), len(model_input))

    path = tmp_path_factory.mktemp("page") / "odd"
    modelpack.save_model(NonFinite(), path)
    return path


def test_model_without_signature_or_example_and_non_finite_predictions(serve, browser, odd_outputs_model_dir):
    server = serve(odd_outputs_model_dir)
    open_page(browser, f"{server.url}/")
    note = by_id(browser, "inputs-note")
    assert note.is_displayed() and "without an input signature" in note.text
    assert "without an example" in by_id(browser, "request-hint").text
    skeleton = json.loads(by_id(browser, "request-body").get_attribute("value"))
    assert set(skeleton) == {"dataframe_split"}  # something to start from, to be edited

    type_request(browser, json.dumps({"dataframe_split": {"columns": ["x"], "data": [[1], [2], [3], [4]]}}))
    assert [row[0] for row in send_and_read_predictions(browser)] == ["NaN", "Infinity", "-Infinity", "1.5"]
    assert "NaN" in by_id(browser, "raw-response").get_attribute("textContent")
    assert_only_loopback(browser, server)
    assert_console_clean(browser)


def test_the_browser_tests_run_in_ci():
    """CI installs chromium and chromium-driver (.ci/run) and selenium (the test extra): there the browser tests
    must run, never skip."""
    if not os.environ.get("CI"):
        pytest.skip("checked in CI only (CI=true)")
    assert missing() is None and shutil.which("chromium") and shutil.which("chromedriver")
