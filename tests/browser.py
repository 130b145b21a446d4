"""Headless Chromium for the tests that open pages in a real browser (Debian's packages).

Where chromium or chromedriver is missing these tests skip with the reason, except under
MERKIT_REQUIRE_BROWSER=1 (set by .ci/run, which installs both): there a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REQUIRE_BROWSER = "MERKIT_REQUIRE_BROWSER"


def require_programs(*names: str) -> list[str]:
    """The paths of `names` on PATH; skip (or fail where CI requires them) when one is absent."""
    found = [shutil.which(name) for name in names]
    missing = [name for name, path in zip(names, found, strict=True) if path is None]
    if missing:
        message = (
            f"{' and '.join(missing)} not installed (Debian: apt-get install chromium "
            "chromium-driver; .ci/run installs them)"
        )
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"{REQUIRE_BROWSER}=1 but {message}")
        pytest.skip(message)
    return [path or "" for path in found]


def chromium_driver(downloads: Path):  # -> selenium.webdriver.Chrome
    """Headless Chromium driven through Debian's chromedriver: Selenium Manager never runs."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = require_programs("chromium", "chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1700", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"):  # fmt: skip
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    browser = webdriver.Chrome(service=Service(driver), options=options)
    browser.set_page_load_timeout(30)
    browser.set_script_timeout(30)
    return browser
