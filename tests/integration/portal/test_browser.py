"""Issue 22: the portal's pages in a real headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium): a consumer finds data in the catalog and requests it, the
provider's approver approves it from the inbox, the consumer sees it active and ends it.
Screenshots of the main pages go to docs/portal/ (``EXCHANGE_SCREENSHOTS=1``)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import ROOT
from tests.integration.portal.conftest import PASSWORD, PortalEnv

pytestmark = pytest.mark.integration
CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SHOTS = ROOT / "docs" / "portal"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and DRIVER.exists()):
        pytest.fail("chromium and chromium-driver are not installed (scripts/setup.sh --test does)")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium fetch a driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium", ignore_errors=True)


def _shot(driver: WebDriver, name: str) -> None:
    if os.environ.get("EXCHANGE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / f"{name}.png"))


def _go(driver: WebDriver, element: WebElement) -> None:
    """Click something that loads a page, and wait until the old page is gone (finding
    elements before that finds the old page's)."""
    old = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 15).until(ec.staleness_of(old))


def _login(driver: WebDriver, env: PortalEnv, department: str, username: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{env.r1.url}/login")
    Select(driver.find_element(By.ID, "department")).select_by_value(department)
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    _go(driver, driver.find_element(By.ID, "login"))
    WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.ID, "catalog-search")))


def test_request_approve_and_end_a_grant_in_the_browser(
    staffed: PortalEnv, browser: WebDriver
) -> None:
    env, d = staffed, browser
    _login(d, env, env.consumer, "c_applicant")
    _shot(d, "catalog")
    # Search by a Chinese field name of the entry's schema.
    d.find_element(By.ID, "q").send_keys("公民身份号码")
    _go(d, d.find_element(By.ID, "search"))
    rows = d.find_elements(By.CSS_SELECTOR, "#entries tr.entry")
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == [env.entry]
    d.find_element(By.ID, "q").clear()
    d.find_element(By.ID, "q").send_keys("no such words anywhere")
    _go(d, d.find_element(By.ID, "search"))
    assert d.find_elements(By.CSS_SELECTOR, "#entries tr.entry") == []
    d.get(f"{env.r1.url}/catalog/{env.entry}")
    assert "sensitive" in d.find_element(By.ID, "fields").get_attribute("innerHTML")
    _shot(d, "entry")
    _go(d, d.find_element(By.ID, "request-link"))
    for name in ("citizen_id", "region_code"):
        d.find_element(By.CSS_SELECTOR, f"input[name=fields][value={name}]").click()
    d.find_element(By.ID, "purpose_text").send_keys("低保资格核查")
    d.find_element(By.ID, "legal_basis").send_keys("《社会救助暂行办法》第十一条")
    _shot(d, "request")
    _go(d, d.find_element(By.ID, "submit-request"))
    status = WebDriverWait(d, 10).until(ec.presence_of_element_located((By.ID, "grant-status")))
    assert status.text == "待审批"
    grant_id = d.find_element(By.TAG_NAME, "h1").text

    _login(d, env, env.provider, "p_approver")
    d.get(f"{env.r1.url}/inbox")
    row = d.find_element(By.CSS_SELECTOR, f"tr.pending[data-grant='{grant_id}']")
    assert "低保资格核查" in row.text
    _shot(d, "inbox")
    _go(d, row.find_element(By.CSS_SELECTOR, "button.approve"))
    WebDriverWait(d, 10).until(ec.presence_of_element_located((By.ID, "inbox")))
    assert d.find_elements(By.CSS_SELECTOR, f"tr.pending[data-grant='{grant_id}']") == []

    # The provider's records flow: the consumer sees them delivered under the grant.
    env.publish_people(5)
    env.start_router()
    _login(d, env, env.consumer, "c_applicant")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        d.get(f"{env.r1.url}/grants/{grant_id}")
        if d.find_element(By.ID, "delivered-count").text == "5":
            break
        time.sleep(1)
    assert d.find_element(By.ID, "delivered-count").text == "5"
    assert "grant.approved" in d.find_element(By.ID, "history").text
    _shot(d, "grant")
    # The entry shows when its provider last published to it.
    d.get(f"{env.r1.url}/catalog/{env.entry}")
    deadline = time.monotonic() + 30
    while d.find_element(By.ID, "last-update").text == "尚无数据" and time.monotonic() < deadline:
        time.sleep(1)
        d.refresh()
    assert d.find_element(By.ID, "last-update").text.startswith(str(dt.date.today().year))
    d.get(f"{env.r1.url}/grants")
    mine = d.find_element(By.CSS_SELECTOR, f"#as-consumer tr.grant[data-grant='{grant_id}']")
    assert mine.find_element(By.CLASS_NAME, "status").text.startswith("生效中")
    assert mine.find_element(By.CLASS_NAME, "delivered").text == "5"
    _shot(d, "grants")
    # Renewing fills the request form in with the grant's terms, for a new period.
    d.get(str(mine.find_element(By.CLASS_NAME, "renew").get_attribute("href")))
    checked = d.find_elements(By.CSS_SELECTOR, "input[name=fields]:checked")
    assert [c.get_attribute("value") for c in checked] == ["citizen_id", "region_code"]
    assert d.find_element(By.ID, "purpose_text").get_attribute("value") == "低保资格核查"
    d.get(f"{env.r1.url}/grants")
    mine = d.find_element(By.CSS_SELECTOR, f"#as-consumer tr.grant[data-grant='{grant_id}']")
    _go(d, mine.find_element(By.CSS_SELECTOR, "button.revoke"))
    mine = d.find_element(By.CSS_SELECTOR, f"#as-consumer tr.grant[data-grant='{grant_id}']")
    assert mine.find_element(By.CLASS_NAME, "status").text.startswith("已终止")
    # In English too.
    d.get(f"{env.r1.url}/grants?lang=en")
    mine = d.find_element(By.CSS_SELECTOR, f"#as-consumer tr.grant[data-grant='{grant_id}']")
    assert mine.find_element(By.CLASS_NAME, "status").text.startswith("ended")


def test_a_form_posted_without_its_csrf_token_is_refused(
    staffed: PortalEnv, browser: WebDriver
) -> None:
    env, d = staffed, browser
    _login(d, env, env.consumer, "c_applicant")
    d.get(f"{env.r1.url}/grants")
    # A forged form: the same action, no token (as another site's page would post it).
    d.execute_script(
        "const f = document.createElement('form'); f.method = 'post';"
        "f.action = '/logout'; document.body.appendChild(f); f.submit();"
    )
    message = WebDriverWait(d, 10).until(ec.presence_of_element_located((By.ID, "error-message")))
    assert "CSRF" in message.text


def test_post_a_need_and_answer_it_in_the_browser(staffed: PortalEnv, browser: WebDriver) -> None:
    env, d = staffed, browser
    _login(d, env, env.consumer, "c_applicant")
    d.get(f"{env.r1.url}/demands")
    d.find_element(By.ID, "demand-title").send_keys("婚姻登记信息")
    d.find_element(By.ID, "demand-fields").send_keys("male_citizen_id，female_citizen_id")
    d.find_element(By.ID, "demand-purpose").send_keys("家庭关系核查")
    Select(d.find_element(By.ID, "demand-holder")).select_by_value(env.provider)
    _go(d, d.find_element(By.ID, "post-demand"))
    row = d.find_element(By.XPATH, "//tr[contains(@class,'demand')][contains(., '婚姻登记信息')]")
    need = row.get_attribute("data-demand")
    assert row.find_element(By.CLASS_NAME, "demand-state").text.startswith("待答复")
    assert "female_citizen_id" in row.text

    _login(d, env, env.provider, "p_approver")
    d.get(f"{env.r1.url}/demands?state=open")
    row = d.find_element(By.CSS_SELECTOR, f"tr.demand[data-demand='{need}']")
    _shot(d, "demands")
    Select(row.find_element(By.NAME, "outcome")).select_by_value("matched")
    Select(row.find_element(By.NAME, "entry")).select_by_value(env.entry)
    _go(d, row.find_element(By.CLASS_NAME, "answer-button"))

    _login(d, env, env.consumer, "c_applicant")
    d.get(f"{env.r1.url}/demands")
    row = d.find_element(By.CSS_SELECTOR, f"tr.demand[data-demand='{need}']")
    assert row.find_element(By.CLASS_NAME, "demand-state").text.startswith("已有目录")
    # One click from the answer to the request form for the entry that has the data.
    _go(d, row.find_element(By.CLASS_NAME, "request-matched"))
    assert d.find_element(By.ID, "request-form") is not None
    assert env.entry in d.current_url


def test_object_to_a_record_and_answer_it_in_the_browser(
    staffed: PortalEnv, browser: WebDriver
) -> None:
    env, d = staffed, browser
    made = env.person(env.consumer, "c_applicant").post("/api/v1/grants", env.request_body())
    assert made.status_code == 201, made.text
    grant_id = made.json()["id"]
    approver = env.person(env.provider, "p_approver")
    assert approver.post(f"/api/v1/grants/{grant_id}/approve", {}).status_code == 200

    _login(d, env, env.consumer, "c_applicant")
    d.get(f"{env.r1.url}/grants/{grant_id}")
    d.find_element(By.ID, "key").send_keys("140602198001010011")
    d.find_element(By.ID, "field-name").click()
    d.find_element(By.ID, "problem").send_keys("姓名与户籍档案不符")
    d.find_element(By.ID, "evidence").send_keys("户籍档案 2026-118")
    _go(d, d.find_element(By.ID, "file-objection"))
    state = d.find_element(By.ID, "objection-state")
    assert state.get_attribute("data-state") == "filed" and state.text.startswith("已上报")
    objection_id = d.find_element(By.TAG_NAME, "h1").text.split()[-1]
    # The consumer cannot answer its own objection: no provider actions on its page.
    assert d.find_elements(By.ID, "do-accept") == []

    _login(d, env, env.provider, "p_approver")
    d.get(f"{env.r1.url}/notices")
    told = d.find_element(By.CSS_SELECTOR, "tr.notice[data-kind='objection_filed']")
    _go(d, told.find_element(By.TAG_NAME, "a"))
    assert d.find_element(By.ID, "problem").text == "姓名与户籍档案不符"
    _go(d, d.find_element(By.ID, "do-investigate"))
    assert d.find_element(By.ID, "objection-state").get_attribute("data-state") == "investigating"
    d.find_element(By.ID, "note-accept").send_keys("核实有误，下次导出更正")
    _go(d, d.find_element(By.ID, "do-accept"))
    assert d.find_element(By.ID, "objection-state").get_attribute("data-state") == "accepted"
    steps = d.find_elements(By.CSS_SELECTOR, "#steps tr.step")
    assert [s.get_attribute("data-state") for s in steps] == ["filed", "investigating", "accepted"]
    assert "核实有误" in steps[-1].text
    _shot(d, "objection")
    d.get(f"{env.r1.url}/objections?state=accepted")
    listed = d.find_elements(By.CSS_SELECTOR, "#objections tr.objection")
    assert objection_id in [r.find_element(By.TAG_NAME, "a").text for r in listed]

    # The operators' assessment page lists every department, printable.
    _login(d, env, env.ops, "root")
    d.get(f"{env.r1.url}/reports/assessment")
    rows = d.find_elements(By.CSS_SELECTOR, "#assessment tr.assessed")
    assert env.provider in [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows]
    _shot(d, "assessment")
    d.get(str(d.find_element(By.ID, "printable").get_attribute("href")))
    assert "数据归集共享工作考核" in d.find_element(By.TAG_NAME, "h1").text
