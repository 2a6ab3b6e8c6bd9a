"""Links between reports that work in results/ and inside a `snakemake --report` archive."""

from __future__ import annotations

import html
import posixpath

from snakemake.common import get_report_id
from snakemake.iocontainers import FILE_HASH_PREFIX_LEN

__all__ = ["ARCHIVE_LINKS_SCRIPT", "archive_path", "report_link"]

# A `snakemake --report report.zip` archive stores each file as data/raw/<id>/<name>, where <id>
# is Snakemake's hash of the file's path in the workflow, shortened: there a link such as
# ../virtual_eve/report.html leads nowhere. Each link carries both targets; this script, placed
# after the links, switches to the archive's when the page is opened from one.
ARCHIVE_LINKS_SCRIPT = """<script>
if (/\\/data\\/raw\\/[0-9a-f]{16,64}\\/[^/]+$/.test(location.pathname)) {
  document.querySelectorAll("a[data-archive-href]").forEach(function (a) {
    a.setAttribute("href", a.getAttribute("data-archive-href"));
  });
}
</script>"""


def archive_path(path: str) -> str:
    """Where `snakemake --report` stores the workflow file ``path`` (under the archive's folder)."""
    path = posixpath.normpath(path)
    record = get_report_id(path)[:FILE_HASH_PREFIX_LEN]
    return posixpath.join("data", "raw", record, posixpath.basename(path))


def report_link(source: str, target: str, text: str) -> str:
    """An ``<a>`` from the report ``source`` to ``target`` (workflow paths, e.g.
    ``results/summary/report.html``), relative in results/ and, with `ARCHIVE_LINKS_SCRIPT`,
    in the report archive."""
    here = posixpath.relpath(target, posixpath.dirname(posixpath.normpath(source)))
    there = posixpath.relpath(archive_path(target), posixpath.dirname(archive_path(source)))
    return (
        f'<a href="{html.escape(here)}" data-archive-href="{html.escape(there)}">'
        f"{html.escape(text)}</a>"
    )
