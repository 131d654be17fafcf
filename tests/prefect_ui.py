"""The Prefect UI in a real headless Chromium (Debian's chromium and chromedriver), driven
with Selenium the way an operator clicks through it: log in, search, open tabs, read pages.

Every lookup waits explicitly (WebDriverWait) for what the page must show and finds things
by what they show (names, labels, tab titles), not by position.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = os.environ.get("PFCON_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PFCON_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 90  # seconds: the machine is shared, and a page may wait for a run's logs
T = TypeVar("T")


def start_chromium() -> webdriver.Chrome:
    """Headless Chromium that resolves no host name (only loopback IP URLs load) and calls home
    for nothing; --no-sandbox because the tests run as root."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for failures
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run"):
        options.add_argument(argument)
    return webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=options)


def _side_bar_link(item: str) -> str:
    """The XPath of the side bar's link ``item``."""
    return f"//*[@data-sidebar='sidebar']//a[normalize-space()='{item}']"


def _text(element: WebElement) -> str:
    return " ".join(element.text.split())


class NotShown(AssertionError):
    """The UI did not show what a step waited for; says what it showed instead."""


def _what_is_shown(driver: webdriver.Chrome) -> str:
    """The page's URL, the start of its visible text and its console's warnings and errors."""
    try:
        text = _text(driver.find_element(By.TAG_NAME, "body"))[:800]
    except Exception as error:  # the page itself may be what failed
        text = f"(no text: {error!r})"
    console = [entry["message"] for entry in driver.get_log("browser") if entry["level"] != "INFO"][-10:]
    return f"{driver.current_url} showing {text!r}; console: {console}"


class PrefectUI:
    """One logged-in operator's view of a Prefect server's UI."""

    def __init__(self, driver: webdriver.Chrome, url: str) -> None:
        self.driver = driver
        self.url = url

    def until(self, condition: Callable[[webdriver.Chrome], T], what: str) -> T:
        """``condition``'s first truthy answer within WAIT seconds (a page re-rendering under a
        lookup is retried)."""
        def attempt(driver: webdriver.Chrome) -> T | None:
            try:
                return condition(driver)
            except StaleElementReferenceException:
                return None
        try:
            return WebDriverWait(self.driver, WAIT).until(attempt)
        except TimeoutException:
            raise NotShown(f"the UI never showed {what}; it was at {_what_is_shown(self.driver)}") from None

    def visible(self, xpath: str, what: str) -> WebElement:
        """The first displayed element ``xpath`` matches, once there is one."""
        return self.until(
            lambda driver: next((e for e in driver.find_elements(By.XPATH, xpath) if e.is_displayed()), None), what)

    def click(self, xpath: str, what: str) -> None:
        """Click the first displayed element ``xpath`` matches (found again if the page
        re-renders it under the click)."""
        def clicked(driver: webdriver.Chrome) -> bool:
            self.visible(xpath, what).click()
            return True
        self.until(clicked, what)

    def log_in(self, auth_string: str) -> None:
        """Open the UI, which asks for the server's auth string, and log in with it."""
        self.driver.get(self.url)
        self.visible("//input[@type='password']", "a login page").send_keys(auth_string, Keys.ENTER)
        self.nav("Dashboard")

    def home(self) -> None:
        """Load the UI afresh at its start page (logged in: the auth string is kept), so what
        an earlier page left on screen does not carry over."""
        self.driver.get(self.url)
        self.visible(_side_bar_link("Dashboard"), "the side bar")

    def nav(self, item: str) -> None:
        """Follow the side bar's link ``item`` (Runs, Deployments ...)."""
        self.click(_side_bar_link(item), f"the {item} link")

    def tab(self, title: str) -> WebElement:
        """Select a page's tab ``title``; its panel."""
        self.click(f"//*[@role='tab'][normalize-space()='{title}']", f"a {title} tab")
        return self.visible("//*[@role='tabpanel'][@data-state='active']", f"the {title} tab's panel")

    def open_flow_run(self, name: str) -> None:
        """Search the runs list by flow run name and open the one named ``name``."""
        self.home()
        self.nav("Runs")
        self.tab("Flow Runs")
        self.visible("//input[@placeholder='Search by flow run name']", "the flow run search").send_keys(name)
        self.click(f"//a[normalize-space()='{name}']", f"flow run {name} in the runs list")
        self.at(name)

    def at(self, name: str) -> None:
        """Wait until the page shown is the one named ``name`` (its breadcrumb's current page)."""
        self.visible(f"//*[@aria-current='page'][normalize-space()='{name}']", f"{name}'s page")

    def step_links(self, names: Iterable[str]) -> dict[str, str]:
        """The open run's steps ``names``, as subflow runs or task runs, with their pages' URLs,
        once the run's Subflow Runs and Task Runs tabs list them all."""
        wanted = set(names)

        def listed(driver: webdriver.Chrome) -> dict[str, str] | None:
            found: dict[str, str] = {}
            for title in ("Subflow Runs", "Task Runs"):
                panel = self.tab(title)
                for link in panel.find_elements(By.XPATH, ".//a[@href]"):
                    if _text(link) in wanted:
                        found[_text(link)] = link.get_attribute("href")
            return found if set(found) == wanted else None
        return self.until(listed, f"the steps {sorted(wanted)}")

    def logs_show(self, url: str, name: str, line: str) -> WebElement:
        """Open the page of run ``name`` at ``url`` and its logs; the log message that is
        exactly ``line``."""
        self.driver.get(url)
        self.at(name)
        self.tab("Logs")
        return self.visible(f"//*[@role='tabpanel'][@data-state='active']//*[normalize-space(text())='{line}']",
                            f"the log line {line!r}")

    def open_custom_run(self, flow: str) -> None:
        """The custom run form of flow ``flow``'s deployment, from the deployments list."""
        self.home()
        self.nav("Deployments")
        self.click(f"//tr[.//*[normalize-space()='{flow}']]//a[contains(@href, '/deployment')]", f"{flow}'s deployment")
        self.click("//button[normalize-space()='Run']", "the deployment's Run button")
        self.click("//*[@role='menuitem'][normalize-space()='Custom run']", "the Custom run item")
        self.at("Run")

    def field(self, label: str) -> WebElement:
        """The run form's field labelled ``label``: its label, description and input."""
        label_element = self.visible(f"//label[normalize-space()='{label}']", f"a field {label!r}")
        return label_element.find_element(By.XPATH, "./ancestor::div[contains(concat(' ', @class, ' '), ' group ')][1]")

    def field_input(self, label: str) -> WebElement:
        """The control the label ``label`` is for."""
        label_element = self.visible(f"//label[normalize-space()='{label}']", f"a field {label!r}")
        return self.driver.find_element(By.ID, label_element.get_attribute("for"))

    def choices(self, label: str) -> list[str]:
        """The options of the select field ``label`` (opened, read, closed)."""
        self.field_input(label).click()
        def shown(driver: webdriver.Chrome) -> list[str] | None:
            texts = [_text(e) for e in driver.find_elements(By.XPATH, "//*[@role='option']")]
            return texts if texts and all(texts) else None  # the list renders before its items' text

        options = self.until(shown, f"{label}'s options")
        self.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
        return options
