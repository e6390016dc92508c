"""The prompt admin's page in a real browser: headless Chromium driven by selenium.

It logs in, edits an assistant and sees the live validation error, fixes it, reviews the
diff, publishes, then rolls back after the confirmation. The admin is the real server
(hypercorn's trio worker on 127.0.0.1:0) over moto's S3 server (devkit's local S3).
Screenshots of the list, the editor (with its error, then with its diff), the history and
the rollback land in ``artifacts/screenshots/`` (git-ignored).

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Without
them the test is skipped on a developer's machine and fails under CI (``CI=true``).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from actors.s3_prompt_store import make_s3_client
from devkit.example_prompts import seed_example_prompts
from devkit.local_s3 import LocalS3, run_local_s3
from promptadmin.server import open_admin
from promptadmin.settings import AdminSettings
from sessions.config import Settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SHOTS = Path(__file__).parents[2] / "artifacts" / "screenshots"
TOKEN = "browser-test-token-0123456789"
PLACEHOLDER = " {{caller_name}}"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)

if CHROMIUM is None or CHROMEDRIVER is None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            "CI=true but chromium/chromedriver are missing (.ci/run installs them)",
            pytrace=False,
        )
    pytest.skip("chromium and chromium-driver are not installed", allow_module_level=True)

from selenium import webdriver  # noqa: E402  (only when a browser exists)
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402


@pytest.fixture
def local_s3() -> Iterator[LocalS3]:
    """moto's S3 server on 127.0.0.1 with the example prompts in a versioned bucket."""
    with run_local_s3() as s3:
        seed_example_prompts(s3_client(s3), Settings())
        yield s3


def s3_client(s3: LocalS3) -> Any:
    return make_s3_client(
        region="us-east-1",
        max_connections=4,
        endpoint_url=s3.endpoint_url,
        static_credentials=("local", "local"),
    )


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile, offline Selenium Manager."""
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 15) -> Any:
    # A condition that reads an element of the page a click is replacing (the h1 after
    # Publish) can find the old page's element and then read it after the navigation:
    # StaleElementReferenceException, seen under load (CI). It means "not yet": poll again.
    return WebDriverWait(
        driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    ).until(condition)


def shot(driver: WebDriver, name: str) -> None:
    """A full-page screenshot (DevTools: the window alone would cut long pages)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    data = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )["data"]
    (SHOTS / name).write_bytes(base64.b64decode(data))


def scenario(driver: WebDriver, base: str) -> dict[str, Any]:
    """The admin's session, step by step (blocking: runs in a worker thread)."""
    seen: dict[str, Any] = {}
    driver.get(f"{base}/api/v1/prompts/admin")
    # Not logged in: the page sends us to the login form.
    until(driver, lambda d: d.current_url.endswith("/api/v1/prompts/admin/login"))
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
    until(driver, lambda d: d.find_elements(By.LINK_TEXT, "esther"))
    seen["list"] = driver.find_element(By.TAG_NAME, "table").text
    shot(driver, "01-list.png")

    driver.find_element(By.LINK_TEXT, "esther").click()
    text = until(driver, lambda d: d.find_element(By.ID, "text"))
    # Label and control are tied together (accessible name).
    assert driver.find_element(By.CSS_SELECTOR, "label[for=text]").is_displayed()
    text.send_keys(Keys.CONTROL, Keys.END)
    text.send_keys(PLACEHOLDER)
    panel = driver.find_element(By.ID, "validation")
    until(driver, lambda d: "unfilled_placeholder" in panel.text)
    seen["error"] = panel.text
    shot(driver, "02-editor-validation-error.png")

    text.send_keys(Keys.BACK_SPACE * len(PLACEHOLDER))
    text.send_keys(Keys.ENTER, "If the caller asks, offer to call a taxi.")
    until(driver, lambda d: "0 error(s)" in panel.text or "Valid" in panel.text)
    seen["fixed"] = panel.text
    driver.find_element(By.ID, "review").click()
    until(driver, lambda d: d.find_elements(By.ID, "publish"))
    seen["diff"] = driver.find_element(By.CSS_SELECTOR, "pre.diff").text
    driver.find_element(By.ID, "message").send_keys("offer a taxi")
    shot(driver, "03-editor-with-diff.png")
    driver.find_element(By.ID, "publish").click()
    until(driver, lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith("Published"))
    seen["published"] = driver.find_element(By.TAG_NAME, "main").text
    shot(driver, "04-published.png")

    driver.find_element(By.LINK_TEXT, "History").click()
    until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "pre.diff"))
    seen["history_diff"] = driver.find_element(By.CSS_SELECTOR, "pre.diff").text
    shot(driver, "05-history.png")
    driver.find_element(By.LINK_TEXT, "Roll back to this").click()
    until(driver, lambda d: d.find_elements(By.ID, "confirm-rollback"))
    seen["confirm"] = driver.find_element(By.TAG_NAME, "main").text
    driver.find_element(By.ID, "message").send_keys("taxi offer withdrawn")
    shot(driver, "06-rollback-confirmation.png")
    driver.find_element(By.ID, "confirm-rollback").click()
    until(driver, lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith("Rolled back"))
    driver.find_element(By.LINK_TEXT, "History").click()
    until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "tbody tr"))
    seen["history_rows"] = len(driver.find_elements(By.CSS_SELECTOR, "tbody tr"))
    seen["history"] = driver.find_element(By.TAG_NAME, "table").text
    shot(driver, "07-history-after-rollback.png")
    return seen


async def test_login_edit_validate_publish_rollback(
    local_s3: LocalS3, browser: WebDriver, tmp_path: Path
) -> None:
    client = s3_client(local_s3)
    original = client.get_object(Bucket="nova-sonic-prompts", Key="assistants/esther.md")
    original_text = original["Body"].read().decode()
    # moto's servers in one process share one backend: count what this test adds.
    versions_before = len(
        client.list_object_versions(Bucket="nova-sonic-prompts", Prefix="assistants/esther.md")[
            "Versions"
        ]
    )
    admin = AdminSettings(tokens={"carol": TOKEN}, audit_log=tmp_path / "audit.log")
    with trio.fail_after(120):
        async with open_admin(
            Settings(), admin, listen=("127.0.0.1", 0), s3_client=client
        ) as running:
            seen = await trio.to_thread.run_sync(scenario, browser, running.url)
    assert "esther" in seen["list"] and "support-agent" in seen["list"]
    assert "unfilled_placeholder" in seen["error"] and "1 error(s)" in seen["error"]
    assert "+If the caller asks, offer to call a taxi." in seen["diff"]
    assert "Version" in seen["published"]
    assert "+If the caller asks, offer to call a taxi." in seen["history_diff"]
    assert "-If the caller asks, offer to call a taxi." in seen["confirm"]
    # The publish and the rollback each added a version: history is never rewritten.
    assert seen["history_rows"] == versions_before + 2
    assert "carol" in seen["history"] and "taxi offer withdrawn" in seen["history"]
    current = client.get_object(Bucket="nova-sonic-prompts", Key="assistants/esther.md")
    assert current["Body"].read().decode() == original_text
    audit = [line for line in (tmp_path / "audit.log").read_text().splitlines() if line]
    assert len(audit) == 2 and '"who":"carol"' in audit[0]
