"""The summary's links to the task reports work in results/ and in `snakemake --report` archives.

A two-rule workflow whose summary links to a task report as notebooks/summary.ipynb does
(`sdofm.reports.links`) is run and archived by Snakemake itself; the links are then followed
in both layouts, and clicked in headless Chromium where it is installed.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from sdofm.reports.links import ARCHIVE_LINKS_SCRIPT, archive_path, report_link
from tests.conftest import snakemake_runs

SOURCE, TARGET = "results/summary/report.html", "results/virtual_eve/report.html"

SNAKEFILE = f'''
rule all:
    input: "{SOURCE}"

rule task:
    output: report("{TARGET}", category="Tasks")
    shell: "echo '<html><head><title>the task report</title></head></html>' > {{output}}"

rule summary:
    input: "{TARGET}"
    output: report("{SOURCE}", category="Summary")
    run:
        Path(output[0]).write_text(
            "<html><head><title>summary</title></head><body>"
            + {report_link(SOURCE, TARGET, "virtual_eve")!r}
            + {ARCHIVE_LINKS_SCRIPT!r}
            + "</body></html>"
        )
'''


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """The mini workflow run and archived by `snakemake --report`, unpacked."""
    work = tmp_path_factory.mktemp("archive")
    (work / "Snakefile").write_text("from pathlib import Path\n" + SNAKEFILE)
    runs = snakemake_runs(work, [["--cores", "1"], ["--report", "report.zip"]], dry=False)
    for run in runs:
        assert run["code"] == 0, run["output"][-3000:]
    with zipfile.ZipFile(work / "report.zip") as zf:
        zf.extractall(work / "unzipped")
    return work


def _href(page: Path, attribute: str) -> str:
    return re.search(rf'{attribute}="([^"]+)"', page.read_text()).group(1)


def test_links_resolve_in_both_layouts(archive):
    # results/: the plain relative link
    summary = archive / SOURCE
    assert (summary.parent / _href(summary, "href")).resolve() == (archive / TARGET).resolve()
    # the archive: Snakemake put the files where archive_path says, and the link resolves there
    root = archive / "unzipped" / "report"
    stored = root / archive_path(SOURCE)
    assert stored.is_file() and (root / archive_path(TARGET)).is_file()
    there = posixpath.normpath(
        posixpath.join(archive_path(SOURCE), "..", _href(stored, "data-archive-href"))
    )
    assert there == archive_path(TARGET)
    assert not (stored.parent / _href(stored, "href")).exists()  # why the script is needed


@pytest.mark.browser
def test_clicking_the_link_opens_the_task_report(archive):
    if not shutil.which("chromium"):
        pytest.skip("no Chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from sdofm.reports.browser import CHROMIUM_ARGS, find_chromium

    pages = [archive / SOURCE, archive / "unzipped" / "report" / archive_path(SOURCE)]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        try:
            for summary in pages:
                page = browser.new_page()
                page.goto(summary.as_uri(), wait_until="load")
                page.click("text=virtual_eve")
                page.wait_for_load_state("load")
                assert page.title() == "the task report", (summary, page.url)
                page.close()
        finally:
            browser.close()
