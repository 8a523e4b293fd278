# -*- coding: utf-8 -*-

# Copyright (c) 2026, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The status page as a browser lays it out (headless Chromium): on a phone,
a target table keeps its reasons in view; on a wall screen it shows every
column. The page is the role's, from a real HAProxy; a script added to a copy
of it reports each cell's box."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest

from conftest import LOOPBACK, checked, free_ports, wait_status

PHONE = (390, 480)
WALL_SCREEN = (1100, 340)
# The least width of a laid-out reason cell: text rendered with a real font, not
# zero-width boxes (a browser without fonts would pass any overflow test).
MIN_TEXT_PX = 40
COLUMNS = ["target", "address", "verdict", "probe ms", "checked (UTC)", "reason"]
# The page in a frame of the screen's size (Chromium's headless window is at least
# 500 px wide), and a script that reports each cell's box in it.
FRAME = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="page" width="%d" height="%d" style="border:0" srcdoc="%s"></iframe>
<script>
window.onload = () => {
  const page = document.getElementById("page").contentDocument;
  const rows = [...page.querySelectorAll("tr")].map(tr => [...tr.children].map(cell => {
    const box = cell.getBoundingClientRect();
    return {text: cell.textContent, shown: getComputedStyle(cell).display !== "none",
            left: box.left, right: box.right};
  }));
  document.body.setAttribute("data-layout",
    JSON.stringify({width: page.documentElement.clientWidth, rows: rows}));
};
</script></body></html>"""

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (scripts/lib.sh installs it)")


@pytest.fixture(scope="module")
def page_html(deploy, fake_servers):
    """A check of two targets, one refused: a KO page with both kinds of rows."""
    echo, = fake_servers(1)
    refused = {"host": LOOPBACK, "port": free_ports()[0], "name": "echo-b"}
    service, = deploy({"haproxy_checktcp_checks": [
        {"name": "search", "targets": [dict(echo.target, name="echo-a"), refused]}]})
    wait_status(service, 503, 10, path="/search")
    return checked(service.request(path="/search")).body.decode()


def layout(page, size, tmp_path):
    frame = tmp_path / "frame.html"
    frame.write_text(FRAME % (size + (html.escape(page),)))
    dom = subprocess.run(
        ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=%d,%d" % (max(size[0], 500), size[1]), "--dump-dom", frame.as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.search(r'data-layout="([^"]*)"', dom)
    assert found, dom
    return json.loads(html.unescape(found.group(1)))


def test_a_phone_keeps_each_reason_in_view(page_html, tmp_path):
    report = layout(page_html, PHONE, tmp_path)
    assert report["width"] == PHONE[0], report
    header, *rows = report["rows"]
    assert [cell["text"] for cell in header] == COLUMNS, report
    assert len(rows) == 2, report
    for row in rows:
        reason = row[-1]
        assert reason["shown"] and reason["right"] - reason["left"] >= MIN_TEXT_PX, report
        # Every cell shown lies within the screen: nothing to scroll sideways for.
        assert [cell for cell in row if cell["shown"] and cell["right"] > report["width"] + 0.5] == [], report
    assert "refused" in rows[1][-1]["text"], report


def test_a_wall_screen_shows_every_column(page_html, tmp_path):
    report = layout(page_html, WALL_SCREEN, tmp_path)
    for row in report["rows"]:
        assert all(cell["shown"] and cell["right"] <= report["width"] + 0.5 for cell in row), report
