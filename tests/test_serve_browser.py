"""The page end to end in a real headless Chromium (Debian's, driven by Selenium): type a prompt, move alpha,
watch the image change, click a channel, turn it off, reload the permalink; a screenshot goes to out/.

Chromium runs off the network: no proxy, every host name but 127.0.0.1 unresolvable, background services
off. Skipped (with the reason) only when the chromium / chromium-driver packages or selenium are missing.
"""

import contextlib
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from helpers import SHAPES_WORLD

pytestmark = SHAPES_WORLD  # the shapes-world atlas (conftest's `shapes`), cached under out/test_cache
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = next(
    (
        p
        for p in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser"))
        if p and os.path.exists(p)
    ),
    None,
)
DRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver") if p and os.path.exists(p)), None)
OFFLINE_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--window-size=1500,1000",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    "--disable-breakpad",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
]


@contextlib.contextmanager
def serving(app):
    """uvicorn serving `app` on 127.0.0.1, a free port, in a thread; yields the base URL."""
    pytest.importorskip("uvicorn", reason="the web extra is not installed (pip install -e '.[webtest]')")
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs=dict(sockets=[sock]), daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def server(shapes):
    pytest.importorskip("starlette", reason="the web extra is not installed (pip install -e '.[webtest]')")
    from serve import create_app

    with serving(create_app(shapes[0])) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no Chromium here: apt-get install chromium chromium-driver (.ci/run does) to run the page test")
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install -e '.[webtest]')"
    )
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager never downloads a driver or a browser
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in OFFLINE_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait(driver, condition, what, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d), message=what)


PIXELS = """
const img = arguments[0];
if (!img.complete || !img.naturalWidth) return null;
const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
const g = c.getContext('2d'); g.drawImage(img, 0, 0);
return Array.from(g.getImageData(0, 0, c.width, c.height).data);
"""


def edited(driver, i=0):
    return driver.find_elements("css selector", "img.edited")[i]


def loaded(driver, img, needle):
    """The image shows the answer of a URL containing `needle` (set only after the picture decoded)."""
    url = img.get_attribute("data-url") or ""
    return needle in url and "loading" not in (img.get_attribute("class") or "")


def test_page_types_a_prompt_moves_alpha_and_explores_a_channel(server, browser, shapes, tmp_path):
    from selenium.webdriver.common.keys import Keys

    d = browser
    d.get(server + "/?seeds=0,1,2,3")
    wait(d, lambda d: d.execute_script("return document.body.dataset.ready") == "1", "the page never got ready")
    wait(
        d,
        lambda d: all(i.get_attribute("data-url") for i in d.find_elements("css selector", "img.original")),
        "the original images never loaded",
    )
    assert len(d.find_elements("css selector", ".card")) == 4

    # typing shows vocabulary suggestions; Enter applies the prompt
    box = d.find_element("id", "prompt")
    box.send_keys("re")
    wait(
        d,
        lambda d: "red" in [li.text for li in d.find_elements("css selector", "#prompt-suggest li")],
        "no suggestion 'red' while typing 're'",
    )
    box.send_keys("d", Keys.ENTER)
    wait(d, lambda d: d.find_elements("css selector", "#chart rect.bar"), "the channel chart never appeared")
    wait(d, lambda d: loaded(d, edited(d), "prompt=red"), "the edited image never followed the prompt")
    before = d.execute_script(PIXELS, edited(d))
    original = d.execute_script(PIXELS, d.find_elements("css selector", "img.original")[0])
    assert before == original, "at alpha 0 the edited image should equal the original"

    # moving alpha: the edited image changes, the original does not
    slider = d.find_element("id", "alpha")
    slider.send_keys(Keys.PAGE_UP, Keys.PAGE_UP)
    alpha = float(d.find_element("id", "alpha-value").text)
    assert alpha > 0
    wait(d, lambda d: loaded(d, edited(d), f"alpha={alpha:g}"), f"the image never followed alpha {alpha}")
    after = d.execute_script(PIXELS, edited(d))
    assert after != before, "the edited image did not change when alpha moved"
    assert d.execute_script(PIXELS, d.find_elements("css selector", "img.original")[0]) == original

    # clicking a channel shows its words, its consistency and its strip; turning it off changes the edit
    key = d.find_elements("css selector", "#channel-list tr.ch")[0].get_attribute("data-ch")  # the strongest
    d.find_element("css selector", f'#chart rect[data-ch="{key}"]').click()
    wait(d, lambda d: d.find_element("id", "channel-panel").is_displayed(), "the channel panel never opened")
    wait(d, lambda d: len(d.find_elements("css selector", "#channel-words li")) >= 3, "no words for the channel")
    assert "consistency" in d.find_element("id", "channel-stats").text
    layer, channel = key.split(":")
    assert d.find_element("id", "channel-title").text.startswith(f"layer {layer} ")
    wait(
        d,
        lambda d: loaded(d, d.find_element("id", "channel-strip"), f"/api/channel/{layer}/{channel}/strip.png"),
        "the channel strip never loaded",
    )
    d.find_element("id", "channel-toggle").click()
    wait(
        d, lambda d: loaded(d, edited(d), "off=" + key.replace(":", "%3A")), "turning the channel off did not re-render"
    )
    assert "bar off" in d.find_element("css selector", f'#chart rect[data-ch="{key}"]').get_attribute("class")
    toggled = d.execute_script(PIXELS, edited(d))
    assert toggled != after, "turning the strongest channel off changed nothing"

    wait(d, lambda d: loaded(d, d.find_element("id", "strip"), "prompt=red"), "the alpha strip never loaded")
    REPO.joinpath("out").mkdir(exist_ok=True)
    d.execute_script("window.scrollTo(0, 0)")
    d.save_screenshot(str(REPO / "out" / "serve_page.png"))

    # the URL is a permalink: a fresh load shows the same view
    link = d.current_url
    assert "prompt=red" in link and f"ch={key.replace(':', '%3A')}" in link
    d.get(link)
    wait(d, lambda d: d.execute_script("return document.body.dataset.ready") == "1", "the permalink never loaded")
    assert d.find_element("id", "prompt").get_attribute("value") == "red"
    assert float(d.find_element("id", "alpha").get_attribute("value")) == alpha
    wait(d, lambda d: loaded(d, edited(d), f"alpha={alpha:g}"), "the permalink's edit never rendered")
    assert d.execute_script(PIXELS, edited(d)) == toggled, "the permalink shows another edit"
    wait(d, lambda d: len(d.find_elements("css selector", "#channel-words li")) >= 3, "the permalink lost the channel")

    # Accept stacks the edit (alpha back to 0, the image unchanged); Reset clears it (back to the original)
    d.find_element("id", "accept").click()
    wait(d, lambda d: len(d.find_elements("css selector", "#stack li")) == 1, "Accept did not stack the edit")
    assert float(d.find_element("id", "alpha").get_attribute("value")) == 0
    wait(d, lambda d: loaded(d, edited(d), "stack="), "the stacked edit never rendered")
    assert d.execute_script(PIXELS, edited(d)) == toggled, "Accept changed the picture"
    d.find_element("id", "reset").click()
    wait(d, lambda d: not d.find_elements("css selector", "#stack li"), "Reset did not clear the stack")
    wait(
        d,
        lambda d: loaded(d, edited(d), "alpha=0") and "stack=" not in edited(d).get_attribute("data-url"),
        "Reset never re-rendered",
    )
    assert d.execute_script(PIXELS, edited(d)) == d.execute_script(
        PIXELS, d.find_elements("css selector", "img.original")[0]
    )

    # W / W+ latents uploaded from a file become cards of their own
    import numpy as np

    latents = tmp_path / "two.npy"
    np.save(latents, shapes[0].sample_ws([5, 6], psi=0.7).numpy())
    d.find_element("id", "latent-file").send_keys(str(latents))
    wait(d, lambda d: len(d.find_elements("css selector", ".card")) == 6, "the uploaded latents never showed")
    wait(
        d,
        lambda d: d.find_elements("css selector", "img.original")[5].get_attribute("data-url"),
        "the uploaded latent never rendered",
    )

    # an image file is inverted (a job with progress) into a card of its own
    from PIL import Image

    from query.media import to_uint8

    png = tmp_path / "face.png"
    Image.fromarray(to_uint8(shapes[0].render(shapes[0].sample_ws([7], psi=0.7)))[0]).save(png)
    d.execute_script("document.getElementById('invert-steps').value = '3'")
    d.find_element("id", "image-file").send_keys(str(png))
    wait(d, lambda d: len(d.find_elements("css selector", ".card")) == 7, "the inverted image never showed")
    assert "inverted in 3 steps" in d.find_element("id", "method-note").text
    assert d.find_element("id", "job-progress").get_attribute("value") == "3"

    # the method selector: optimize runs as a job and the page names the method and its reason
    from selenium.webdriver.support.ui import Select

    d.find_element("id", "prompt").clear()
    d.find_element("id", "prompt").send_keys("red", Keys.ENTER)
    Select(d.find_element("id", "method")).select_by_value("optimize")
    d.execute_script("document.getElementById('method-steps').value = '2'")
    d.find_element("id", "run-method").click()
    wait(
        d,
        lambda d: "method used: optimize" in d.find_element("id", "method-note").text,
        "the optimize job never finished on the page",
    )
    assert "asked for optimization" in d.find_element("id", "method-note").text
    wait(
        d,
        lambda d: d.execute_script("return document.getElementById('method-result').naturalWidth") > 0,
        "the optimized images never loaded",
    )
    assert "method=optimize" in d.current_url

    # nothing but this server was asked for anything, and the page logged no errors
    urls = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(server) or u.startswith("blob:") for u in urls), urls
    severe = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_page_takes_slider_defaults_from_the_server_and_psi_0_from_a_link(shapes, browser, monkeypatch):
    pytest.importorskip("starlette", reason="the web extra is not installed (pip install -e '.[webtest]')")
    import serve.app
    from serve import create_app

    # a server whose defaults differ from the ones written in index.html (beta 0.15, psi 0.7)
    monkeypatch.setattr(serve.app, "DEFAULT_BETA", 0.2)
    monkeypatch.setattr(serve.app, "DEFAULT_PSI", 0.5)
    d = browser
    with serving(create_app(shapes[0])) as url:
        for query, psi in (("?seeds=0", "0.5"), ("?seeds=0&psi=0", "0")):
            d.get(url + "/" + query)
            wait(d, lambda d: d.execute_script("return document.body.dataset.ready") == "1", "the page never got ready")
            assert float(d.find_element("id", "beta").get_attribute("value")) == 0.2
            assert d.find_element("id", "beta-value").text == "0.200"
            assert d.find_element("id", "psi").get_attribute("value") == psi
            asked = re.compile(rf"[?&]psi={re.escape(psi)}(&|$)")
            original = lambda d: d.find_elements("css selector", "img.original")[0].get_attribute("data-url") or ""  # noqa: E731
            wait(d, lambda d: asked.search(original(d)), f"the original image was not asked for at psi {psi}")


def test_live_server_refuses_bad_requests_in_one_line(server):
    """Through uvicorn itself: long URLs and a 1 GB upload get a JSON 4xx at once (nothing read past the limit)."""
    import http.client
    import json

    host, port = server.rsplit("/", 1)[1].split(":")

    def ask(method, path, headers=(), body=b""):
        c = http.client.HTTPConnection(host, int(port), timeout=30)
        c.putrequest(method, path)
        for k, v in headers:
            c.putheader(k, v)
        c.endheaders()
        if body:
            c.send(body)
        r = c.getresponse()
        return r.status, json.loads(r.read())["error"]

    for path, words in [
        ("/api/edit.png?seed=" + ",".join(["7"] * 10_000), "at most 16"),
        ("/api/edit.png?prompt=" + "x" * 100_000, "at most 300"),
        ("/api/edit.png?prompt=red&alpha=NaN", "finite"),
    ]:
        status, message = ask("GET", path)
        assert status == 400 and words in message and "\n" not in message
    start = time.perf_counter()
    status, message = ask("POST", "/api/latents?name=w.npy", [("Content-Length", str(1 << 30))], b"\0" * (1 << 20))
    assert status == 413 and "at most" in message and time.perf_counter() - start < 10
