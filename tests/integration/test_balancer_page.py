"""The balancer's status page (/) checked in headless Chromium (Debian's
chromium package): a balancer with two stand-in upstreams, one of them
killed, and the DOM Chromium builds from the page must list both backends
with their state (one up, one down) and hold the connections chart.

Skipped when chromium is not installed (the runner counts a skip as a
failure under CI=true).
"""

import html.parser
import os
import shutil
import subprocess
import tempfile
import unittest

from test_balancer import BINARY, Balancer, Upstream, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class PageParser(html.parser.HTMLParser):
    """Collects the rows of table#backends (class and cell texts) and the
    chart: svg#cps and its polyline."""

    def __init__(self):
        super().__init__()
        self.rows = []
        self.in_backends = False
        self.row = None
        self.cell = None
        self.svg = False
        self.polyline = False
        self.title = ""
        self.in_title = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.in_backends = a.get("id") == "backends"
        elif tag == "tr" and self.in_backends:
            self.row = {"class": a.get("class", ""), "cells": []}
        elif tag == "td" and self.row is not None:
            self.cell = ""
        elif tag == "svg" and a.get("id") == "cps":
            self.svg = True
        elif tag == "polyline" and self.svg:
            self.polyline = True
        elif tag == "title":
            self.in_title = True

    def handle_endtag(self, tag):
        if tag == "td" and self.row is not None and self.cell is not None:
            self.row["cells"].append(self.cell.strip())
            self.cell = None
        elif tag == "tr" and self.row is not None:
            if self.row["cells"]:
                self.rows.append(self.row)
            self.row = None
        elif tag == "table":
            self.in_backends = False
        elif tag == "title":
            self.in_title = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data
        if self.in_title:
            self.title += data


def chromium_dom(url, folder, screenshot=None):
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync",
            "--user-data-dir=" + os.path.join(folder, "profile")]
    if screenshot is not None:
        argv += ["--screenshot=" + screenshot, "--window-size=1200,900"]
    else:
        argv += ["--dump-dom"]
    r = subprocess.run(argv + [url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=90)
    if r.returncode != 0:
        raise AssertionError("chromium exited %d: %s" % (r.returncode,
                                                         r.stderr.decode()[-2000:]))
    return r.stdout.decode("utf-8", "replace")


@unittest.skipUnless(os.access(BINARY, os.X_OK), "postern-balancer not built")
@unittest.skipUnless(CHROMIUM, "chromium is not installed (deploy/install-deps adds it)")
class StatusPageTest(unittest.TestCase):

    def test_page_shows_backends_states_and_chart(self):
        alive, dead = Upstream("fe-alive"), Upstream("fe-dead")
        lb = Balancer(upstreams={"imap": [alive.addr(), dead.addr()]},
                      env={"POSTERN_UPSTREAM_NAMES": "alive,dead",
                           "POSTERN_CHECK_INTERVAL": "200ms"})
        folder = tempfile.mkdtemp(prefix="lb-page-")
        try:
            # Some traffic for the chart, then one frontend dies.
            for _ in range(4):
                s, _ = lb.greet()
                s.close()
            dead.kill()
            wait_for(lambda: lb.backend("imap", "dead")["state"] == "down", timeout=10,
                     what="the killed upstream to be down")
            wait_for(lambda: lb.backend("imap", "alive")["state"] == "up", timeout=10,
                     what="the live upstream to be up")

            dom = chromium_dom("http://127.0.0.1:%d/" % lb.admin_port, folder)
            page = PageParser()
            page.feed(dom)
            self.assertIn("postern-balancer", page.title)
            rows = {r["cells"][1]: r for r in page.rows if len(r["cells"]) >= 4}
            self.assertEqual(set(rows), {"alive", "dead"}, dom[:3000])
            # Cells: protocol, backend, address, state, ...
            self.assertEqual(rows["alive"]["cells"][0], "imap")
            self.assertEqual(rows["alive"]["cells"][2], alive.addr())
            self.assertEqual(rows["alive"]["cells"][3], "up")
            self.assertEqual(rows["alive"]["class"], "up")
            self.assertEqual(rows["dead"]["cells"][2], dead.addr())
            self.assertEqual(rows["dead"]["cells"][3], "down")
            self.assertEqual(rows["dead"]["class"], "down")
            self.assertTrue(page.svg, "no svg#cps chart in the DOM")

            # The page renders (a PNG of it is written).
            shot = os.path.join(folder, "status.png")
            chromium_dom("http://127.0.0.1:%d/" % lb.admin_port, folder, screenshot=shot)
            with open(shot, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        finally:
            lb.stop()
            alive.kill()
            dead.kill()
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
