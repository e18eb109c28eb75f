"""The operator's web pages in a real headless Chromium against a live `annostream up`: the
status page renders, a failed analysis shows its message with file and line, Retry (after
logging in with the token) refuses a still-broken folder and re-imports the fixed one, and the
allele table pages. Screenshots go to test-artifacts/browser/ (look at them)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.stack import ROOT, Stack, make_stack, wait_until
from tests.test_e2e import GENEPANEL, TEST_ANALYSIS, analysis_named
from tests.test_retry import drop_broken, failed_job

TOKEN = "web-test-token"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "test-artifacts" / "browser"


@pytest.fixture
def stack(tmp_path: Path, pg_url: str, broker, topic_prefix: str) -> Iterator[Stack]:
    running = make_stack(tmp_path, db_url=pg_url, bootstrap=broker.bootstrap_servers, prefix=topic_prefix)
    running.env["ANNOSTREAM_API_TOKENS"] = TOKEN
    running.cli("db", "upgrade")
    running.cli("deposit", "genepanel", "--folder", str(GENEPANEL))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.fail(
            "the browser tests need Debian's chromium and chromium-driver "
            "(make test installs them as root: ops/scripts/ensure-tools.sh)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1440,900",
        f"--user-data-dir={tmp_path / f'chromium-{uuid.uuid4().hex[:6]}'}",
    ):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    except WebDriverException as error:
        pytest.fail(f"cannot start headless Chromium: {error.msg}")
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def text_of(driver: WebDriver, css: str) -> str:
    """The element's text, retried while htmx swaps the element (auto-refresh)."""
    for _ in range(20):
        try:
            return str(driver.find_element(By.CSS_SELECTOR, css).text)
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"{css} kept changing")


def wait_for_text(driver: WebDriver, css: str, expected: str, timeout_s: float = 30) -> str:
    def found(_driver: WebDriver) -> str | bool:
        try:
            text = text_of(_driver, css)
        except WebDriverException:
            return False
        return text if expected in text else False

    return str(WebDriverWait(driver, timeout_s, poll_frequency=0.3).until(found))


def test_pages_in_a_real_browser(stack: Stack, browser: WebDriver) -> None:
    stack.drop(TEST_ANALYSIS)
    line = drop_broken(stack, "Broken-W1")
    job = failed_job(stack, "Broken-W1")
    good = wait_until(
        lambda: analysis_named(stack, "TestAnalysis-001"),
        timeout_s=90,
        what="TestAnalysis-001 imported",
        on_timeout=stack.log_tail,
    )

    # 1. The status page renders with every part reachable, and refreshes itself.
    browser.get(f"{stack.api}/")
    assert browser.title.startswith("Pipeline")
    assert text_of(browser, "h1") == "Pipeline health"
    wait_for_text(browser, ".cards", "reachable")
    wait_for_text(browser, "#failures", "Broken-W1")
    assert "revision" in text_of(browser, ".cards")
    marker = browser.execute_script("document.getElementById('health').dataset.seen = 'old'; return 1")
    assert marker == 1
    WebDriverWait(browser, 15).until(
        lambda d: d.execute_script("return document.getElementById('health').dataset.seen") is None
    )
    assert browser.execute_script("return window.performance.getEntriesByType('navigation').length") == 1
    shot(browser, "status")

    # 2. The failed analysis is listed with its message, file and line; Retry needs a login.
    browser.get(f"{stack.api}/ui/jobs?status=FAILED")
    row = wait_for_text(browser, f"#job-{job['id']}", "Broken-W1")
    assert "POS" in row and f"line {line}" in row and "TestAnalysis-001.vcf" in row
    assert "log in to retry" in row
    shot(browser, "jobs-failed")

    browser.find_element(By.LINK_TEXT, "log in to retry").click()
    browser.find_element(By.NAME, "token").send_keys("wrong-token")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for_text(browser, ".flash.error", "invalid token")
    browser.find_element(By.NAME, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith("/ui/jobs"))
    cookie = browser.get_cookie("annostream_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == "", "scripts cannot read the session"

    # 3. Retry of a still-broken folder shows the new error at once; after the fix it re-imports.
    browser.get(f"{stack.api}/ui/jobs?status=FAILED")
    browser.find_element(By.CSS_SELECTOR, f"#job-{job['id']} button.retry").click()
    error = wait_for_text(browser, ".flash.error", "still fails")
    assert f"TestAnalysis-001.vcf:{line}:" in error
    folder = next(stack.failed.glob("Broken-W1*"))
    shutil.copy(TEST_ANALYSIS / "TestAnalysis-001.vcf", folder / "TestAnalysis-001.vcf")
    browser.find_element(By.CSS_SELECTOR, f"#job-{job['id']} button.retry").click()
    notice = wait_for_text(browser, ".flash.notice", "retried as import job")
    assert f"import job {job['id']} retried" in notice
    wait_until(
        lambda: analysis_named(stack, "Broken-W1"),
        timeout_s=90,
        what="Broken-W1 re-imported",
        on_timeout=stack.log_tail,
    )
    browser.get(f"{stack.api}/ui/jobs?q=Broken-W1")
    wait_for_text(browser, "#jobs", "DONE")
    assert f"retry of job {job['id']}" in text_of(browser, "#jobs")
    jobs = stack.get("/api/v1/import/jobs", analysis="Broken-W1")["items"]
    assert sorted(item["status"] for item in jobs) == ["DONE", "FAILED"], "one failure, one retry, no more"
    shot(browser, "jobs-retried")

    # 4. The allele table pages (htmx swaps the table; the URL follows).
    browser.get(f"{stack.api}/ui/analyses/{good['id']}?per_page=2")
    first = [row.get_attribute("data-id") for row in browser.find_elements(By.CSS_SELECTOR, "tr.allele")]
    assert len(first) == 2
    total = int(text_of(browser, "#alleles h2 .count"))
    assert total == stack.get(f"/api/v1/analyses/{good['id']}/alleles", per_page=1)["total"] > 4
    assert "TestSample-001" in text_of(browser, "#samples")
    shot(browser, "analysis")
    browser.find_element(By.CSS_SELECTOR, "#alleles a[rel=next]").click()
    wait_for_text(browser, "#alleles .pager .where", "page 2 of")
    second = [row.get_attribute("data-id") for row in browser.find_elements(By.CSS_SELECTOR, "tr.allele")]
    assert len(second) == 2 and not set(first) & set(second)
    assert "page=2" in browser.current_url
    shot(browser, "analysis-page-2")

    for page in ("analyses", "bundles", "reannotations", "dead-letters"):
        browser.get(f"{stack.api}/ui/{page}")
        assert "Annostream" in browser.title and browser.find_element(By.TAG_NAME, "h1").text
        shot(browser, page)
    assert "Broken-W1" in text_of(browser, "#dead-letters")
    assert "none parked" in text_of(browser, "#parked")
