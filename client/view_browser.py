"""A headless Chromium that loads a Neuroglancer URL, for `view`'s screenshots without a person.

Debian's ``chromium`` and ``chromium-driver`` (found on ``PATH``), driven by Selenium with our own
chromedriver (Selenium's manager would try to download one). WebGL without a GPU is SwiftShader,
Chromium's software renderer through ANGLE: ``--use-gl=angle --use-angle=swiftshader`` and, since
Chromium 137, ``--enable-unsafe-swiftshader`` to allow it for WebGL. As root (containers, CI),
Chromium refuses to start without ``--no-sandbox``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence

from .errors import ViewerError

__all__ = ["BROWSERS", "DRIVER", "find_browser", "browser_flags", "headless_browser"]

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER = "chromedriver"
_HINT = "install Chromium and its driver (Debian/Ubuntu: apt-get install chromium chromium-driver), or leave --screenshot out"


def find_browser() -> tuple[str, str]:
    """The Chromium binary and chromedriver on ``PATH``.

    Raises
    ------
    ViewerError
        Either is missing.
    """
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = shutil.which(DRIVER)
    if browser is None or driver is None:
        missing = "Chromium" if browser is None else "chromedriver"
        raise ViewerError(f"--screenshot needs a headless Chromium: no {missing} on PATH; {_HINT}")
    return browser, driver


def browser_flags(size: Sequence[int]) -> list[str]:
    """Chromium's flags for a headless window of ``size`` (width, height) with software WebGL."""
    flags = ["--headless=new", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
             "--disable-dev-shm-usage", "--hide-scrollbars", f"--window-size={size[0]},{size[1]}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--no-sandbox")
    return flags


@contextlib.contextmanager
def headless_browser(url: str, size: Sequence[int]) -> Iterator[object]:
    """A headless Chromium showing ``url``; quit on exit.

    Raises
    ------
    ViewerError
        Chromium or chromedriver missing, or Chromium did not start.
    """
    browser, driver_path = find_browser()
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in browser_flags(size):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    except WebDriverException as e:
        first = (e.msg or str(e)).strip().splitlines()[0]
        raise ViewerError(f"--screenshot: Chromium ({browser}) did not start: {first}; {_HINT}") from e
    try:
        driver.set_page_load_timeout(60)
        driver.get(url)
        yield driver
    finally:
        driver.quit()
