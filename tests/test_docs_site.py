"""The documentation site of `make docs`, checked in a real headless browser.

The site is built (`make docs`), served from `_docs/html` on 127.0.0.1 and visited page by page in headless
Chromium through Selenium. Every page must load without a console error and without a single request
leaving localhost (the browser is also told that no other host exists), every internal link and image
must resolve, the results page must show its figures and the search must find the paper's terms.
Screenshots of the home page and of an experiment page go to `_docs/screenshots/`.

Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y --no-install-recommends chromium
chromium-driver`) and selenium (the `docs` extra, which `make docs` installs). Without them the test is
skipped, except under CI (`CI=true`), where a missing browser fails: CI installs it (.ci/run).
"""
import http.server
import importlib.util
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / '_docs' / 'html'
SHOTS = ROOT / '_docs' / 'screenshots'
CHROMIUM = Path(os.environ.get('MMP_CHROMIUM', '/usr/bin/chromium'))
CHROMEDRIVER = Path(os.environ.get('MMP_CHROMEDRIVER', '/usr/bin/chromedriver'))
APT = 'apt-get install -y --no-install-recommends chromium chromium-driver'
NOT_PAGES = ('_static', '_sources', '_images', '_downloads')  # folders of assets, not pages
LOCAL_SCHEMES = ('data', 'blob', 'about')
SEARCH_TERM = 'non-participation'


def _unavailable(why: str):
    "Skip for want of the browser, or fail under CI, where the browser is installed on purpose."
    if os.environ.get('CI', '').strip().lower() == 'true': pytest.fail(f'{why}; under CI this is an error (.ci/run installs it)')
    pytest.skip(why)


def _build_site() -> None:
    "What `make docs` runs, with the interpreter running the tests: staging, then Sphinx with warnings as errors."
    missing = [m for m in ('sphinx', 'myst_nb', 'furo', 'sphinxarg', 'selenium') if importlib.util.find_spec(m) is None]
    if missing: _unavailable(f'{missing} not installed in {sys.prefix}: `pip install -e ".[docs]"` (or `make docs-deps`)')
    for cmd in ([sys.executable, str(ROOT / 'docs' / 'stage.py'), str(ROOT / '_docs' / 'src')],
                [sys.executable, '-m', 'sphinx', '-b', 'html', '-c', str(ROOT / 'docs'), '-d', str(ROOT / '_docs' / 'doctrees'),
                 '-q', '-W', '--keep-going', str(ROOT / '_docs' / 'src'), str(HTML)]):
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False, cwd=ROOT)
        if res.returncode: pytest.fail(f'`{" ".join(cmd[1:3])}` failed ({res.returncode}):\n{(res.stdout + res.stderr)[-6000:]}')


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError): super().handle_error(request, client_address)  # the browser dropped a request


@pytest.fixture(scope='module')
def server():
    missing = [f'{p} (Debian package {pkg})' for p, pkg in ((CHROMIUM, 'chromium'), (CHROMEDRIVER, 'chromium-driver'))
               if not p.is_file()]
    if missing: _unavailable(f'missing {", ".join(missing)}: install with `{APT}`')
    _build_site()
    httpd = _Server(('127.0.0.1', 0), partial(_Quiet, directory=str(HTML)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}/'
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


@pytest.fixture(scope='module')
def driver(server):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable(f'selenium is not installed in {sys.prefix}: `pip install -e ".[docs]"` (or `make docs-deps`)')
    os.environ['SE_OFFLINE'] = 'true'  # Selenium Manager never downloads (it is not even started: the paths are given)
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--window-size=1280,900',
                '--no-first-run', '--disable-extensions', '--disable-background-networking', '--disable-component-update',
                '--disable-sync', '--disable-default-apps',
                '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'):  # a remote load fails loudly
        opts.add_argument(arg)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL', 'performance': 'ALL'})
    drv = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    drv.set_page_load_timeout(60)
    drv.set_script_timeout(30)
    yield drv
    drv.quit()


def _settle(drv) -> None:
    "Wait for MathJax (when the page has it) and for every image to finish loading."
    drv.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const images = () => Promise.all(Array.from(document.images, img => {
            img.loading = 'eager';
            return img.complete ? null : new Promise(r => { img.onload = img.onerror = r; });
        }));
        const math = () => (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
        math().then(images).then(() => done(true));""")


def _requests(drv) -> list[str]:
    "Every URL the page asked for: the network log of this page, plus the Resource Timing entries."
    urls = []
    for entry in drv.get_log('performance'):
        msg = json.loads(entry['message'])['message']
        if msg.get('method') == 'Network.requestWillBeSent': urls.append(msg['params']['request']['url'])
    return urls + drv.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or (parts.scheme in ('http', 'https', 'ws') and parts.hostname == '127.0.0.1')


@pytest.fixture(scope='module')
def crawl(server, driver):
    "Visit every HTML page of the site; per page: console errors, remote requests, links and images."
    pages = sorted(p.relative_to(HTML).as_posix() for p in HTML.rglob('*.html') if p.relative_to(HTML).parts[0] not in NOT_PAGES)
    assert 'index.html' in pages, f'no index.html in {HTML}'
    out = {}
    for page in pages:
        driver.get(server + page)
        _settle(driver)
        out[page] = {
            'errors': [e['message'] for e in driver.get_log('browser') if e['level'] == 'SEVERE'],
            'remote': sorted({u for u in _requests(driver) if not _is_local(u)}),
            'links': driver.execute_script("return Array.from(document.querySelectorAll('a[href]'), a => a.href)"),
            'images': driver.execute_script(
                "return Array.from(document.images, i => ({src: i.currentSrc || i.src, width: i.naturalWidth}))")}
    print(f'docs site: {len(pages)} pages visited')
    return out


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as r: return r.status
    except urllib.error.HTTPError as e: return e.code


def test_pages_load_without_console_errors(crawl):
    bad = {page: r['errors'] for page, r in crawl.items() if r['errors']}
    assert not bad, f'console errors on {len(bad)} of {len(crawl)} pages: {json.dumps(bad, indent=1)[:4000]}'


def test_no_request_leaves_localhost(crawl):
    bad = {page: r['remote'] for page, r in crawl.items() if r['remote']}
    assert not bad, f'requests to other hosts: {json.dumps(bad, indent=1)[:4000]}'


def test_internal_links_resolve(server, crawl):
    origin = urlsplit(server).netloc
    links = {}  # url without fragment -> {fragment: page that links to it}
    for page, r in crawl.items():
        for href in r['links']:
            parts = urlsplit(href)
            if parts.netloc != origin: continue
            links.setdefault(urlunsplit(parts._replace(fragment='')), {})[unquote(parts.fragment)] = page
    assert links, 'no internal links found'
    broken = [f'{url} (linked from {next(iter(frags.values()))})' for url, frags in links.items() if _status(url) != 200]
    assert not broken, f'{len(broken)} of {len(links)} internal links do not resolve: {broken[:20]}'
    missing = []  # #fragments that name no id of their page
    for url, frags in links.items():
        frags = {f: p for f, p in frags.items() if f}
        if not frags or not urlsplit(url).path.endswith(('.html', '/')): continue
        with urllib.request.urlopen(url, timeout=30) as r: text = r.read().decode('utf-8', 'replace')
        missing += [f'{url}#{f} (linked from {p})' for f, p in frags.items() if f'id="{f}"' not in text]
    assert not missing, f'{len(missing)} links name an anchor their page lacks: {missing[:20]}'


def test_images_resolve_and_render(crawl):
    imgs = {(page, i['src']): i['width'] for page, r in crawl.items() for i in r['images']}
    assert imgs, 'the site has no images'
    broken = [f'{src} on {page}' for (page, src), width in imgs.items()
              if width == 0 or (not src.startswith('data:') and _status(src) != 200)]
    assert not broken, f'{len(broken)} of {len(imgs)} images do not show: {broken[:20]}'


def test_results_page_shows_figures(crawl):
    imgs = crawl['figures/RESULTS.html']['images']
    assert imgs, 'the results page has no figures'
    assert all(i['width'] > 0 for i in imgs), [i['src'] for i in imgs if not i['width']]


def test_api_pages_have_content(server, driver, crawl):
    "An autodoc import failure leaves a page with a title and nothing else: each module page documents something."
    pages = [p for p in crawl if p.startswith('api/') and p != 'api/index.html']
    assert len(pages) >= len([p for p in (ROOT / 'mmp_repro').glob('*.py') if not p.stem.startswith('_')])
    empty = []
    for page in pages:
        driver.get(server + page)
        if not driver.execute_script("return document.querySelectorAll('article dl.py').length"): empty.append(page)
    assert not empty, f'API pages that document nothing: {empty}'


def test_cli_page_lists_the_subcommands(server, driver, crawl):
    driver.get(server + 'cli.html')
    text = driver.find_element('css selector', 'article').text
    for cmd in ('reproduce', 'run', 'evaluate', 'watch'): assert cmd in text


def test_search_finds_the_paper_terms(server, driver):
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(server + f'search.html?q={SEARCH_TERM}')
    hits = WebDriverWait(driver, 30).until(lambda d: d.find_elements('css selector', '#search-results li'))
    assert len(hits) >= 1, f'no search results for {SEARCH_TERM!r}'


def _screenshot(driver, url: str, path: Path) -> None:
    "A full-page screenshot 1280 px wide (at most 16000 px tall)."
    driver.get(url)
    driver.execute_script('localStorage.clear(); sessionStorage.clear()')  # no "Hide Search Matches" left by the search
    driver.refresh()
    _settle(driver)
    height = driver.execute_script('return document.documentElement.scrollHeight')
    driver.set_window_size(1280, min(max(height, 900), 16000))
    try:
        _settle(driver)
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(1280, 900)


def test_screenshots(server, driver, crawl):
    sys.path.insert(0, str(ROOT))
    from mmp_repro.paper import EXPERIMENTS
    exps = [e.notebook for e in EXPERIMENTS.values()]
    executed = [nb for nb in exps if (ROOT / 'figures' / 'notebooks' / nb).is_file()]
    exp_page = f'figures/notebooks/{Path((executed or exps)[0]).stem}.html'
    assert exp_page in crawl
    SHOTS.mkdir(parents=True, exist_ok=True)
    for name, page in (('home', 'index.html'), ('experiment', exp_page)):
        _screenshot(driver, server + page, SHOTS / f'{name}.png')
        assert (SHOTS / f'{name}.png').stat().st_size > 10_000
    print(f'screenshots: {SHOTS}/home.png, {SHOTS}/experiment.png ({exp_page})')
