"""The web view in a real browser: Debian's Chromium driven by selenium.

One headless Chromium for the session (``/usr/bin/chromium`` with the packaged
``/usr/bin/chromedriver`` named by path, so Selenium Manager never runs and nothing is
downloaded). Each test walks pages the way a person would, by clicking links, and saves a
screenshot of every page it sees under ``<basetemp>/web-screenshots/``. No page may log a
console error: a Content-Security-Policy violation (an inline script or style of ours) or
a failed request would show there. Missing Chromium is a failure naming
``scripts/deps/chromium.sh``, never a skip.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import webkit
from webkit import NAME

from cvmfs_publisher.web.render import visible

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # pragma: no cover - reported by the browser fixture
    webdriver = None  # type: ignore[assignment]


@pytest.fixture(scope="session")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.getbasetemp() / "web-screenshots"
    directory.mkdir(exist_ok=True)
    return directory


@pytest.fixture(scope="session")
def browser(downloads: Path) -> Iterator[webdriver.Chrome]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing or webdriver is None:
        pytest.fail(f"the browser tests need Debian's chromium and chromium-driver "
                    f"({', '.join(missing) or 'selenium is not installed'}): run "
                    "scripts/deps/chromium.sh (scripts/test.sh does)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--disable-gpu", "--no-first-run",
                "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False,
        "safebrowsing.enabled": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options,
                              service=Service(executable_path=str(CHROMEDRIVER)))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> webkit.WebRepo:
    return webkit.build(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="module")
def server(web: webkit.WebRepo) -> Iterator[webkit.Server]:
    with webkit.serving(web) as running:
        yield running


class Visit:
    """The browser on our server: open pages, click, and leave a screenshot of each."""

    def __init__(self, driver: webdriver.Chrome, server: webkit.Server, shots: Path,
                 test: str) -> None:
        self.driver, self.server, self.shots, self.test = driver, server, shots, test
        self.count = 0
        driver.get_log("browser")  # forget what earlier tests left

    def open(self, path: str) -> None:
        self.driver.get(self.server.url(path))
        self.settled()

    def click(self, element: object) -> None:
        element.click()  # type: ignore[attr-defined]
        self.settled()

    def settled(self) -> None:
        """The page loaded, ran no script of a name, logged no error; then a screenshot."""
        WebDriverWait(self.driver, 10).until(
            lambda d: d.execute_script("return document.readyState") == "complete")
        with pytest.raises(NoAlertPresentException):
            self.driver.switch_to.alert  # noqa: B018 - raises when there is none
        errors = [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        self.count += 1
        page = urllib.parse.unquote(self.path).removeprefix(f"/repos/{NAME}")
        page = re.sub(r"[^A-Za-z0-9.]+", "-", page).strip("-")
        file = self.shots / f"{self.test}-{self.count}-{page[:60] or 'page'}.png"
        assert self.driver.save_screenshot(str(file))
        assert file.read_bytes().startswith(b"\x89PNG")

    def css(self, selector: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def one(self, selector: str) -> object:
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def link(self, text: str) -> object:
        """The link whose text content is exactly ``text`` (as the page shows it)."""
        found = [a for a in self.css("a") if a.get_attribute("textContent") == text]
        assert len(found) >= 1, (text, [a.get_attribute("textContent") for a in self.css("a")])
        return found[0]

    @property
    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.server.url("")).split("?")[0]


@pytest.fixture
def visit(browser: webdriver.Chrome, server: webkit.Server, screenshots: Path,
          request: pytest.FixtureRequest) -> Visit:
    return Visit(browser, server, screenshots, request.node.name)


def text(element: object) -> str:
    return element.get_attribute("textContent")  # type: ignore[attr-defined]


def test_overview(visit: Visit) -> None:
    visit.open("/")
    visit.click(visit.link(NAME))
    assert visit.path == f"/repos/{NAME}/"
    assert text(visit.one("#current-revision")) == "4"
    assert not visit.css("#whitelist-warning")
    rows = {r.get_attribute("data-front-end"): r for r in visit.css("#publishers tbody tr")}
    assert list(rows) == ["cli", "ci", "watch", "unpacker"]
    assert "revision 1" in text(rows["ci"]) and "v1.0" in text(rows["ci"])
    assert "quota of 10 files exceeded" in text(rows["watch"])
    assert "<script>alert(2)</script>" in text(rows["cli"])  # the tag message, as text
    assert text(visit.one("#areas tbody tr td")) == "alice-drop"
    # the JSON of the page is one click away
    visit.driver.get(visit.one("#json-link").get_attribute("href"))
    assert '"revision": 4' in visit.one("body").text


def test_follow_a_tag(visit: Visit, web: webkit.WebRepo) -> None:
    visit.open(f"/repos/{NAME}/")
    visit.click(visit.link("History"))
    revisions = visit.css("#timeline > li")
    assert [r.get_attribute("id") for r in revisions] == [f"revision-{n}" for n in (4, 3, 2, 1)]
    release = visit.one("#revision-1")
    assert "pipeline" in text(release) and "0123456789ABCDEF" in text(release)
    pipeline = release.find_element(By.LINK_TEXT, "https://ci.example.org/sw/-/pipelines/42")
    assert pipeline.get_attribute("href") == "https://ci.example.org/sw/-/pipelines/42"
    evil = visit.one("#revision-2")
    assert text(evil.find_element(By.CSS_SELECTOR, ".chip")) == webkit.EVIL_TAG
    assert not evil.find_elements(By.CSS_SELECTOR, "b")  # the tag name is not markup
    assert not evil.find_elements(By.CSS_SELECTOR, "a[href^='javascript']")
    visit.click(visit.link("v1.0"))
    assert visit.path == f"/repos/{NAME}/tree/v1.0/"
    assert "revision 1" in text(visit.one(".revision-line"))
    names = [text(a) for a in visit.css("#listing a.entry-link")]
    assert "removed-later.txt" in names
    visit.click(visit.link("removed-later.txt"))
    assert text(visit.one("#entry-name")) == "removed-later.txt"
    # the revision picker works without typing a URL
    Select(visit.one("#rev-select")).select_by_visible_text("revision 4 (current)")
    WebDriverWait(visit.driver, 10).until(lambda d: "/tree/4/" in d.current_url)
    assert "404" in visit.driver.title  # that file is gone in revision 4


def test_browse_into_a_nested_catalog(visit: Visit) -> None:
    visit.open(f"/repos/{NAME}/tree/trunk/")
    assert text(visit.one("#catalog a")) == "/"
    visit.click(visit.link("sw/"))
    row = next(r for r in visit.css("#listing tbody tr") if r.get_attribute("data-name") == "1.0")
    assert "nested catalog" in text(row)
    visit.click(visit.link("1.0/"))
    assert visit.path == f"/repos/{NAME}/tree/trunk/sw/1.0/"
    assert "/sw/1.0" in text(visit.one("#catalog")) and "(nested)" in text(visit.one("#catalog"))
    visit.click(visit.link("flat/"))
    assert text(visit.one("#catalog a")) == "/sw/1.0/flat"
    filter_box = visit.one("#filter")
    assert filter_box.is_displayed()  # the script revealed it
    filter_box.send_keys("f05")
    shown = [r.get_attribute("data-name") for r in visit.css("#listing tbody tr[data-name]")
             if r.is_displayed()]
    assert shown == [f"f05{i}" for i in range(10)]
    visit.click(visit.link("f051"))
    assert text(visit.one("#entry-name")) == "f051"
    assert "/sw/1.0/flat" in text(visit.one("#details #catalog"))


def test_open_a_diff(visit: Visit) -> None:
    visit.open(f"/repos/{NAME}/history")
    visit.click(visit.link("diff with revision 1"))
    assert visit.driver.current_url.endswith("/diff?from=1&to=2")
    marks = {text(r.find_element(By.CSS_SELECTOR, "td a")): r.get_attribute("data-change")
             for r in visit.css("#changes tbody tr")}
    assert marks == {"/removed-later.txt": "removed", "/sw": "changed", "/sw/2.0": "added",
                     "/sw/a/data.txt": "changed"}
    data = next(r for r in visit.css("#changes tbody tr") if "/sw/a/data.txt" in text(r))
    assert "12 B" in text(data) and "20 B" in text(data) and "+8 B" in text(data)
    Select(visit.one("#diff-from")).select_by_visible_text("tag v1.0 (revision 1)")
    WebDriverWait(visit.driver, 10).until(lambda d: "from=v1.0" in d.current_url)
    Select(visit.one("#diff-to")).select_by_visible_text("revision 4 (current)")
    WebDriverWait(visit.driver, 10).until(lambda d: "to=4" in d.current_url)
    visit.settled()
    summary = text(visit.one("#diff-summary"))
    assert "3 added" in summary and "1 removed" in summary and "2 changed" in summary
    visit.click(visit.link("/users"))
    assert visit.path == f"/repos/{NAME}/tree/4/users/"


def test_catalog_map(visit: Visit) -> None:
    visit.open(f"/repos/{NAME}/")
    visit.click(visit.link("4 catalogs"))
    assert text(visit.one("#flagged-count")) == "3 flagged."
    arcs = visit.css("#sunburst a[data-index]")
    assert len(arcs) == 4 and len(visit.css("#sunburst path.flagged")) == 3
    flat = visit.one("#sunburst a[data-index='2'] path")
    assert "/sw/1.0/flat" in text(flat) and "above max" in text(flat)
    assert "flagged" in visit.one("#catalog-2").get_attribute("class")
    # hovering an arc marks its row (the script); clicking a row's link browses the catalog
    visit.driver.execute_script(
        "arguments[0].dispatchEvent(new MouseEvent('mouseover', {bubbles: true}))", flat)
    assert "highlight" in visit.one("#catalog-2").get_attribute("class")
    visit.click(visit.link("bytes"))
    assert len(visit.css("#sunburst a[data-index]")) == 3
    visit.click(visit.one("#catalog-2 a"))
    assert visit.path == f"/repos/{NAME}/tree/trunk/sw/1.0/flat/"


def test_download_a_file(visit: Visit, web: webkit.WebRepo, downloads: Path) -> None:
    visit.open(f"/repos/{NAME}/tree/trunk/")
    visit.click(visit.link("big.bin"))
    assert text(visit.one("#chunked")).startswith("yes")
    assert "uid 1234, gid 567" in visit.one("#details").text
    target = downloads / "big.bin"
    target.unlink(missing_ok=True)
    visit.one("#download").click()
    deadline = time.monotonic() + 20
    while not (target.exists() and target.stat().st_size == webkit.CHUNKED_SIZE):
        assert time.monotonic() < deadline, sorted(p.name for p in downloads.iterdir())
        time.sleep(0.05)
    assert target.read_bytes() == web.files["/big.bin"]
    # a hard link: the other name is listed and leads to the same bytes
    visit.open(f"/repos/{NAME}/tree/trunk/links/a")
    visit.click(visit.link("/links/b"))
    assert text(visit.one("#entry-name")) == "b"


def test_hostile_names_are_text(visit: Visit, web: webkit.WebRepo) -> None:
    visit.open(f"/repos/{NAME}/tree/trunk/hostile/")  # settled(): no alert, no console error
    assert visit.driver.execute_script("return document.images.length") == 0
    scripts = visit.driver.execute_script(
        "return Array.from(document.scripts, s => s.getAttribute('src'))")
    assert scripts == ["/static/app.js"]
    shown = [text(a) for a in visit.css("#listing a.entry-link")]
    for name in webkit.HOSTILE:
        assert visible(name) in shown, name
    markup = visit.link(webkit.MARKUP)
    assert text(markup) == webkit.MARKUP  # the text node is the name itself
    assert not markup.find_elements(By.CSS_SELECTOR, "*")
    target = next(r for r in visit.css("#listing tbody tr")
                  if r.get_attribute("data-name") == "evil-link")
    assert text(target.find_element(By.CSS_SELECTOR, ".target")) == webkit.SCRIPT_TARGET
    visit.click(markup)
    assert text(visit.one("#entry-name")) == webkit.MARKUP
    assert visit.driver.title.startswith(f"/hostile/{webkit.MARKUP}")
    visit.open(f"/repos/{NAME}/tree/trunk/hostile/")
    visit.click(visit.link(f"{webkit.SCRIPT_DIR}/"))
    visit.click(visit.link(webkit.SCRIPT_FILE))
    path = text(visit.one("#details dd"))
    assert path == f"/hostile/{webkit.SCRIPT_TARGET}"
    visit.open(f"/repos/{NAME}/tree/trunk/hostile/")
    visit.click(visit.link(visible("line1\nline2")))
    assert text(visit.one("#entry-name")) == "line1\\nline2"
    visit.click(visit.one("#download"))  # downloads are attachments: the page stays
    assert visit.path.endswith("line1%0Aline2")
