"""The `ravl serve` web page in real headless Chromium (Debian's /usr/bin/chromium), driven by
Playwright, against a real server process: text search, images loading, click-to-search, image
upload with the caption and its neighbours, and a screenshot saved by the run.

Set RAVL_SAVE_SCREENSHOT=1 to also write docs/screenshot.png.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from test_server_api import Server, build_collection

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]
ALL_IMAGES_LOADED = ("sel => [...document.querySelectorAll(sel)].length > 0 && "
                     "[...document.querySelectorAll(sel)].every(i => i.complete && i.naturalWidth > 0)")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                                  reason=f"{CHROMIUM} is absent: install Debian's chromium (make system)")]


def wait_js(page, expression: str, arg=None, timeout: float = 30) -> None:
    """Poll ``expression`` with page.evaluate (the page's CSP forbids Playwright's eval-based waits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.evaluate(expression, arg):
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {expression} ({arg})")


@pytest.fixture(scope="module")
def served(tmp_path_factory, skimage_photos):
    images, coll = build_collection(tmp_path_factory, skimage_photos)
    srv = Server(coll, log_dir=tmp_path_factory.mktemp("browser"))
    yield srv, images
    srv.stop()


@pytest.fixture(scope="module")
def page(served, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS,
                                     env={**os.environ, "HOME": str(tmp_path_factory.mktemp("chromium-home"))})
        pg = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on("console", lambda msg: errors.append(msg.text)
              if msg.type == "error" and "Failed to load resource" not in msg.text else None)
        pg.goto(served[0].url + "/")
        pg.errors = errors
        yield pg
        browser.close()


def test_type_a_query_and_see_result_images(page):
    page.wait_for_selector("#info:has-text('10 images')")
    page.fill("#q", "a cup of coffee")
    page.press("#q", "Enter")
    page.wait_for_selector("#results .card img")
    wait_js(page, ALL_IMAGES_LOADED, "#results .card img")
    assert page.locator("#results .card").count() == 10
    first = page.locator("#results .card").first
    score, _, signals = first.locator(".score").text_content().partition(" · ")
    assert float(score) > 0 and set(signals.split("+")) <= {"vector", "keyword"} and signals  # which signal found it
    assert first.locator(".cap").text_content()
    widths = page.evaluate("[...document.querySelectorAll('#results .card img')].map(i => i.naturalWidth)")
    assert all(w > 0 for w in widths)


def test_click_a_result_to_search_by_it(page):
    card = page.locator("#results .card").nth(1)
    item = card.get_attribute("data-item")
    card.locator("img").click()
    page.wait_for_selector(f"#results-title:has-text('Similar to item {item}')")
    wait_js(page, ALL_IMAGES_LOADED, "#results .card img")
    ids = page.evaluate("[...document.querySelectorAll('#results .card')].map(c => c.dataset.item)")
    assert item not in ids and len(ids) == 9


def test_upload_an_image_and_see_its_caption_with_neighbours(page, served, tmp_path):
    images = served[1]
    page.set_input_files("#file", str(images / "rocket.jpg"))
    wait_js(page, "() => document.querySelector('#caption').textContent.length > 0")
    caption = page.text_content("#caption")
    assert caption and caption in page.evaluate("[...document.querySelectorAll('#neighbours .cap')].map(c => c.textContent)")
    assert "consensus" in page.text_content("#caption-note")
    neighbours = page.locator("#neighbours .card")
    assert neighbours.count() == 5
    wait_js(page, ALL_IMAGES_LOADED, "#neighbours .card img")
    wait_js(page, ALL_IMAGES_LOADED, "#results .card img")
    assert page.locator("#preview").is_visible()
    assert "Similar to rocket.jpg" in page.text_content("#results-title")
    shot = tmp_path / "ravl-serve-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"\nscreenshot of the ravl serve page: {shot}")
    if os.environ.get("RAVL_SAVE_SCREENSHOT") == "1":
        docs = Path(__file__).resolve().parents[1] / "docs" / "screenshot.png"
        docs.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, docs)
        print(f"also saved to {docs}")


def test_describe_a_result_and_errors_show_on_the_page(page, served):
    page.locator("#results .card .describe").first.click()
    page.wait_for_selector("#status:has-text('described item')")
    assert page.locator("#neighbours .card").count() == 5
    page.set_input_files("#file", files=[{"name": "fake.jpg", "mimeType": "image/jpeg", "buffer": b"<html>no</html>"}])
    page.wait_for_selector("#status.error")
    assert "not a JPEG" in page.text_content("#status")
    assert not page.errors, page.errors


def test_api_docs_render_offline(page, served):
    """/docs is Swagger UI served from the swagger-ui-bundle wheel: it renders with no network."""
    page.goto(served[0].url + "/docs")
    page.wait_for_selector(".swagger-ui .title", timeout=30_000)
    assert "ravl" in page.text_content(".swagger-ui .title")
    assert page.locator(".opblock-summary-path:has-text('/search')").count() >= 1


def test_imagine_panel_shows_references_and_result(page, imagine_server, served):
    """The Imagine panel: the key field appears when the server needs one; the result image and its
    provenance show beside the references, the used one marked. Then, on a server without a
    generator, the panel says so and still shows the nearest images."""
    page.goto(imagine_server.url + "/")
    page.wait_for_selector("#imagine-note:has-text('image generator: diffusers:')")
    assert page.locator("#imagine-key").is_visible()
    page.fill("#imagine-prompt", "a cup of coffee")
    page.select_option("#imagine-mode", "init")
    page.fill("#imagine-seed", "3")
    page.click("#imagine-btn")
    page.wait_for_selector("#status.error")  # no key typed yet: 401, shown on the page
    assert "API key" in page.text_content("#status")
    page.fill("#imagine-key", imagine_server.key)
    page.click("#imagine-btn")
    page.wait_for_selector("#status:has-text('imagined in')", timeout=120_000)
    wait_js(page, "() => { const i = document.querySelector('#imagine-output'); return i.complete && i.naturalWidth > 0; }")
    assert page.evaluate("document.querySelector('#imagine-output').naturalWidth") == 64
    note = page.text_content("#imagine-provenance")
    assert "init mode" in note and "seed 3" in note and "self-check: cosine" in note
    wait_js(page, ALL_IMAGES_LOADED, "#imagine-refs .card img")
    assert page.locator("#imagine-refs .card").count() == 4
    assert page.locator("#imagine-refs .card.used").count() == 1
    assert "coffee" in page.locator("#imagine-refs .card.used").get_attribute("title")
    assert page.get_attribute("#imagine-download", "href").startswith("data:image/png;base64,")
    page.goto(served[0].url + "/")  # no generator there: no Imagine panel, no empty "generated image" box
    page.wait_for_selector("#info:has-text('10 images')")
    wait_js(page, "() => document.querySelector('#imagine').hidden")
    assert not page.locator("#imagine").is_visible() and not page.locator("#imagine-output").is_visible()
    assert not page.errors, page.errors


def test_the_search_lives_in_the_url(page, served, tmp_path):
    """Each search changes the URL: the back button returns to the previous search, and a
    bookmarked URL (mode and k included) runs its search on load."""
    page.goto(served[0].url + "/")
    page.wait_for_selector("#info:has-text('10 images')")
    page.fill("#q", "a rocket")
    page.press("#q", "Enter")
    page.wait_for_selector("#results-title:has-text('a rocket')")
    page.select_option("#mode", "vector")
    page.fill("#q", "a cat -dog")
    page.press("#q", "Enter")
    page.wait_for_selector("#results-title:has-text('a cat -dog')")
    assert "q=a+cat+-dog" in page.url and "mode=vector" in page.url
    page.go_back()
    page.wait_for_selector("#results-title:has-text('a rocket')")
    assert page.input_value("#q") == "a rocket" and page.input_value("#mode") == "auto"
    page.goto(served[0].url + "/?q=a+cup+of+coffee&k=12&target=images&mode=keyword")
    page.wait_for_selector("#results-title:has-text('a cup of coffee')")
    assert page.input_value("#k") == "12" and page.input_value("#mode") == "keyword"
    # filters travel in the URL too: a folder with none of the photos leaves no results
    page.goto(served[0].url + "/?q=a+rocket&k=12&target=images&mode=auto&folder=/nowhere&sort=date")
    page.wait_for_selector("#status:has-text('0 results')")
    assert page.locator("#filters").get_attribute("open") is not None and page.input_value("#folder") == "/nowhere"
    page.screenshot(path=str(tmp_path / "filters.png"))
    assert not page.errors, page.errors
