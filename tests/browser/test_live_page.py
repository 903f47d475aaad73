"""The live-quotes page in a real browser: ``/live`` served by gunicorn (gevent workers) against
the fake provider, its EventSource on ``/stock/stream``, and a price move upstream reaching the
page's table without a reload."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import FH_KEY, TD_KEY
from tests.fakes.provider_server import COMPANIES, FakeProviderServer
from tests.servers import Gunicorn

pytestmark = pytest.mark.slow

QUOTE_TTL = 2  # seconds: a watched quote is read again this often
WAIT = 20  # seconds: a liveness bound, not a speed claim
MOVE = 25.0


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(twelvedata_key=TD_KEY, finnhub_key=FH_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def service(fake: FakeProviderServer) -> Iterator[Gunicorn]:
    """Two gevent workers on the embedded store (no REDIS_URL), quotes fresh for 2 s."""
    with Gunicorn({**fake.service_env(), "QUOTE_TTL": str(QUOTE_TTL)}, workers=2) as server:
        yield server


def shown_row(driver: webdriver.Chrome, row_id: str) -> dict[str, str] | None:
    """The row as a person sees it, or None while it is not there. The page replaces a row's
    cells on every quote, so the row is read whole, in one script, never cell by cell."""
    return driver.execute_script(
        """
        const tr = document.getElementById(arguments[0]);
        if (!tr || !tr.querySelector("td.price")) return null;
        return {
            symbol: tr.dataset.symbol,
            price: tr.querySelector("td.price").textContent,
            demo: tr.querySelector(".demo") ? "yes" : "no",
            text: tr.textContent,
        };
        """,
        row_id,
    )


def wait_for_row(
    driver: webdriver.Chrome, row_id: str, until: Callable[[dict[str, str]], bool], what: str
) -> dict[str, str]:
    """The row once ``until`` holds for it; a failure says what the page shows at the deadline."""
    ignored = (NoSuchElementException, StaleElementReferenceException)
    wait = WebDriverWait(driver, WAIT, poll_frequency=0.1, ignored_exceptions=ignored)

    def check(driver: webdriver.Chrome) -> dict[str, str] | bool:
        row = shown_row(driver, row_id)
        return row if row is not None and until(row) else False

    try:
        return wait.until(check)
    except TimeoutException:
        pass
    pytest.fail(f"{what} within {WAIT} s; the page shows: {page_state(driver)!r}", pytrace=False)


def page_state(driver: webdriver.Chrome) -> str:
    return driver.execute_script(
        "return document.getElementById('state').textContent + ' | ' + "
        "document.getElementById('quotes').textContent"
    )


def console_errors(driver: webdriver.Chrome) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_live_page_shows_a_price_move_without_reload(browser, service, fake):
    table_price = COMPANIES["RELIANCE"].price  # the fake's NSE close for RELIANCE
    browser.get(f"{service.url}/live?symbols=RELIANCE")
    assert browser.title == "QuantPulse live quotes"

    first = wait_for_row(browser, "row-RELIANCE-NSE", lambda row: row["price"] != "", "no RELIANCE price")
    assert first["symbol"] == "RELIANCE"
    assert first["demo"] == "no", f"demo data shown instead of the provider's quote: {first['text']}"
    assert first["price"] == f"{table_price:.2f}"  # the fake provider's quote, not a made-up one
    calls_before_move = fake.calls("twelvedata", "/quote")

    fake.move_price("RELIANCE", MOVE)
    moved = wait_for_row(
        browser, "row-RELIANCE-NSE", lambda row: row["price"] != first["price"], "the price never moved"
    )

    assert moved["price"] == f"{float(first['price']) + MOVE:.2f}"
    assert moved["demo"] == "no"
    assert fake.calls("twelvedata", "/quote") > calls_before_move  # re-read upstream, not replayed
    assert browser.find_element(By.ID, "state").text.startswith("live")
    assert console_errors(browser) == []
