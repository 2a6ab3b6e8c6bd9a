"""Open a rendered report in headless Chromium: errors, images and a screenshot.

Uses the system Chromium (Debian package ``chromium``) through Playwright, with no network: a
report that needs the internet to display is a broken report on a cluster or a plane.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from sdofm import SdofmError

__all__ = ["CHROMIUM_ARGS", "check_reports", "find_chromium", "raw_tex"]

# Headless, sandbox-free (containers, CI as root), and nothing phoning home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
]

_IMAGES = """() => Array.from(document.images).map(img => ({
    src: img.src.slice(0, 80), complete: img.complete, width: img.naturalWidth}))"""


# TeX a reader would see as typed: $...$ holding a superscript, subscript or command (the
# offline reports carry no MathJax; figures render their labels with matplotlib's mathtext).
_RAW_TEX = re.compile(r"\$[^$\n]*[\^_\\][^$\n]*\$")


def raw_tex(text: str) -> list[str]:
    """The pieces of TeX markup in a page's visible text (``10$^{-22}$``, ``B$_z$``)."""
    return _RAW_TEX.findall(text)


def find_chromium() -> str:
    """Path of the system Chromium, or a clear error saying how to install it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    msg = "no Chromium found: install Debian's `chromium` package (apt-get install chromium)"
    raise SdofmError(msg)


def check_reports(
    pages: dict[str, tuple[Path, Path]], *, width: int = 1280
) -> dict[str, dict[str, Any]]:
    """For each name -> (report.html, screenshot.png): load it offline, list console and page
    errors, blocked network requests and images that did not load, and save a full-page
    screenshot. Returns the findings per name (empty lists: a clean report)."""
    from playwright.sync_api import sync_playwright

    findings: dict[str, dict[str, Any]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        try:
            for name, (html, png) in pages.items():
                page = browser.new_page(viewport={"width": width, "height": 900})
                found: dict[str, Any] = {"console_errors": [], "page_errors": [], "blocked": []}
                page.on(
                    "console",
                    lambda m, f=found: m.type == "error" and f["console_errors"].append(m.text),
                )
                page.on("pageerror", lambda e, f=found: f["page_errors"].append(str(e)))

                def block(route, f=found):  # offline: any request off this disk is an error
                    f["blocked"].append(route.request.url)
                    route.abort()

                page.route("http*://**", block)
                page.goto(Path(html).resolve().as_uri(), wait_until="load")
                images = page.evaluate(_IMAGES)
                found["images"] = len(images)
                found["broken_images"] = [
                    i["src"] for i in images if not i["complete"] or not i["width"]
                ]
                Path(png).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(png), full_page=True)
                found["title"] = page.title()
                found["raw_tex"] = raw_tex(page.inner_text("body"))
                page.close()
                findings[name] = found
        finally:
            browser.close()
    return findings
