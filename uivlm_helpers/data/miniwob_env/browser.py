"""The Chromium that MiniWoB++ drives: where it is, its switches, and the Selenium instance that starts it.

Debian's ``chromium`` and ``chromium-driver`` (``make system-deps``); ``MINIWOB_CHROME_BINARY`` and
``MINIWOB_CHROMEDRIVER`` default to ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` when unset.
Chromium runs headless with :data:`CHROME_FLAGS` (``--no-sandbox`` because it often runs as root in
containers), passed through a small subclass of miniwob's ``SeleniumInstance`` (site-packages are not
edited).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DEFAULT_CHROME_BINARY = "/usr/bin/chromium"
DEFAULT_CHROMEDRIVER = "/usr/bin/chromedriver"
#: Chromium switches used for every MiniWoB++ browser (headless, root-safe, no background traffic).
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def configure_browser() -> tuple[str, str]:
    """Point MiniWoB++ at Debian's Chromium unless the environment already names a browser.

    Returns:
        ``(chrome_binary, chromedriver)`` as they are now set in ``os.environ``.
    """
    if not os.environ.get("MINIWOB_CHROME_BINARY") and not os.environ.get("MINIWOB_CHROMEDRIVER"):
        os.environ["MINIWOB_CHROME_BINARY"] = DEFAULT_CHROME_BINARY
        os.environ["MINIWOB_CHROMEDRIVER"] = DEFAULT_CHROMEDRIVER
    return os.environ.get("MINIWOB_CHROME_BINARY", ""), os.environ.get("MINIWOB_CHROMEDRIVER", "")


def chrome_available() -> tuple[bool, str]:
    """Whether a Chromium and its driver can be found, and a reason when not."""
    binary = os.environ.get("MINIWOB_CHROME_BINARY") or DEFAULT_CHROME_BINARY
    driver = os.environ.get("MINIWOB_CHROMEDRIVER") or DEFAULT_CHROMEDRIVER
    missing = [p for p in (binary, driver) if not (Path(p).is_file() or shutil.which(p))]
    if missing:
        return False, (f"Chromium/chromedriver not found ({', '.join(missing)}): install them with "
                       "`make system-deps` (Debian packages chromium and chromium-driver)")
    try:  # lazy: miniwob is slow to import, and only a started browser needs it
        import miniwob  # noqa: F401
    except ImportError as error:  # pragma: no cover - a declared dependency
        return False, f"the miniwob package is not installed: {error}"
    return True, ""


def selenium_instance_class():
    """miniwob's SeleniumInstance with our Chromium switches."""
    # lazy: selenium and miniwob are slow to import, and only a started browser needs them
    from miniwob.selenium_instance import SeleniumInstance
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service as ChromeService
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.wait import WebDriverWait

    class _Instance(SeleniumInstance):
        # Same as miniwob's create_driver, with CHROME_FLAGS instead of its three headless switches.
        def create_driver(self):
            assert not hasattr(self, "driver"), f"instance {self.index} already has a driver"
            binary, chromedriver = configure_browser()
            options = webdriver.ChromeOptions()
            for flag in CHROME_FLAGS:
                options.add_argument(flag)
            if binary:
                options.binary_location = binary
            service = ChromeService(executable_path=chromedriver) if chromedriver else None
            self.driver = (webdriver.Chrome(service=service, options=options) if service
                           else webdriver.Chrome(options=options))
            self.driver.implicitly_wait(5)
            self.driver.get(self.url)
            try:
                WebDriverWait(self.driver, 5).until(EC.element_to_be_clickable((By.ID, self.SYNC_SCREEN_ID)))
            except TimeoutException:
                self.driver.quit()
                raise
            self.inner_width, self.inner_height = self.driver.execute_script(
                "return [window.innerWidth, window.innerHeight];")

    return _Instance


def environment_class():
    """miniwob's MiniWoBEnvironment, starting its browser through :func:`selenium_instance_class`."""
    # lazy: miniwob is slow to import, and only a started browser needs it
    from miniwob.environment import MiniWoBEnvironment

    instance_class = selenium_instance_class()

    class _Environment(MiniWoBEnvironment):
        def _hard_reset_instance(self):
            if getattr(self, "instance", None):
                self.instance.close()
            self.instance = instance_class(index=0, **self.instance_kwargs)
            self.instance.start()
            self.instance.wait()

    return _Environment
