"""troupe report RUN.json [--html out.html] (issue 18): the page of a run.

Usage: report_page_test.py path/to/troupe repo_root

- A short MNIST run on --pp 2 with --eval-every writes the report's per-step
  series ("step_series"): one point per step, two stages' busy fractions.
- `troupe report` prints a summary naming the model and strategy.
- The page of that report, with a restart and a rebalance added by hand (a
  real one needs a cluster), rendered by headless Chromium (--dump-dom): one
  svg per plot (loss, accuracy, learning rate, samples/s, stage busy), each
  series with one point per step (the evaluations as dots), both events
  marked on every plot at their step's x, the configuration table with the
  model and strategy, no script, no URL and a Content-Security-Policy of
  default-src 'none'; a screenshot that is not blank.
- Bad input exits 2 naming the file: missing, not JSON, not a troupe report,
  an unwritable --html path.
Fails without Chromium: scripts/bootstrap installs it, and a check whose
renderer is missing must not pass.
"""

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from html.parser import HTMLParser

troupe, root = sys.argv[1], sys.argv[2]
chromium = shutil.which("chromium") or shutil.which("chromium-browser")
if not chromium:
    print("FAIL: no chromium on PATH (scripts/bootstrap installs Debian's chromium)")
    sys.exit(1)
tmp = tempfile.mkdtemp()
STEPS = 30
PLOTS = ["plot-loss", "plot-accuracy", "plot-lr", "plot-samples", "plot-busy"]


def run(args, want=0, contains=None):
    p = subprocess.run([troupe] + args, capture_output=True, text=True, errors="replace",
                       timeout=120, cwd=root)
    out = p.stdout + p.stderr
    assert p.returncode == want, f"troupe {' '.join(args)} -> {p.returncode}, want {want}:\n{out}"
    for c in [contains] if isinstance(contains, str) else contains or []:
        assert c in out, f"troupe {' '.join(args)}: {c!r} not in:\n{out}"
    return out


def browse(page, *flags):
    """Chromium headless on the page (as root it needs --no-sandbox)."""
    # Its own profile in tmp (no ~/.config/chromium); /dev/shm may be small in containers.
    p = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--no-first-run", "--hide-scrollbars", "--disable-dev-shm-usage",
                        "--user-data-dir=" + os.path.join(tmp, "profile"), *flags,
                        "file://" + page],
                       capture_output=True, text=True, errors="replace", timeout=60)
    assert p.returncode == 0, f"chromium {flags} -> {p.returncode}:\n{p.stderr[-2000:]}"
    return p.stdout


class Dom(HTMLParser):
    """The rendered DOM as (tag, attrs, path of enclosing ids, text) elements."""

    def __init__(self):
        super().__init__()
        self.elements, self.stack = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        ids = [e[1].get("id") for e in self.stack if e[1].get("id")]
        self.elements.append([tag, a, ids + ([a["id"]] if "id" in a else []), ""])
        if tag not in ("meta", "br", "link", "img", "input", "hr"):  # HTML's void elements
            self.stack.append(self.elements[-1])

    def handle_endtag(self, tag):
        if any(e[0] == tag for e in self.stack):
            while self.stack.pop()[0] != tag:
                pass

    def handle_data(self, data):
        for e in self.stack:
            e[3] += data

    def find(self, tag, inside=None, cls=None):
        return [e for e in self.elements if e[0] == tag and (inside is None or inside in e[2])
                and (cls is None or cls in e[1].get("class", "").split())]


def png_pixels(path):
    """(width, height, RGB rows) of an 8-bit RGB(A) PNG: enough of a decoder
    to tell a blank screenshot."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "screenshot is not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert depth == 8 and color in (2, 6), f"unexpected PNG format {depth}/{color}"
    bpp = 3 if color == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[i:i + 3]) for i in range(0, stride, bpp)])
        prev = line
    return w, h, rows


def train():
    rep = os.path.join(tmp, "run.json")
    run(["train", "--steps", str(STEPS), "--pp", "2", "--eval-every", "15", "--report", rep,
         "--no-progress", "--threads", "2"])
    r = json.load(open(rep))
    s = r["step_series"]
    # One point per step, at the steps done (as evaluations count them).
    assert s["every"] == 1 and s["step"] == list(range(1, STEPS + 1)), f"points: {s['step']}"
    for key in ("loss", "lr", "samples_per_second", "train_accuracy"):
        assert len(s[key]) == STEPS, f"{key}: {len(s[key])} points, want {STEPS}"
    assert len(s["stage_busy"]) == 2 and all(len(b) == STEPS for b in s["stage_busy"])
    assert all(0 < b <= 1 for b in s["stage_busy"][0]), f"stage 0 busy: {s['stage_busy'][0]}"
    assert all(x > 0 for x in s["samples_per_second"]) and s["loss"][-1] < s["loss"][0]
    return rep, r


def with_events(r):
    """The run's report as if a cluster had restarted it once and rebalanced."""
    r = dict(r)
    r["recovery"] = {"restarts": [{"generation": 1, "failed_at_step": 12, "restored_step": 10,
                                   "restore_source": "snapshot"}]}
    r["balance"] = {"rebalances": [{"step": 20, "kind": "shares", "why": "replica 1 is slower",
                                    "old": [0.5, 0.5], "new": [0.6, 0.4]}]}
    path = os.path.join(tmp, "events.json")
    json.dump(r, open(path, "w"))
    return path


def check_page(page, r):
    html = open(page).read()
    dom = Dom()
    dom.feed(browse(page, "--dump-dom"))
    figures = [e[1]["id"] for e in dom.find("figure")]
    assert figures == PLOTS, f"plots {figures}, want {PLOTS}"
    evaluations = len(r["evaluations"])
    for plot in PLOTS:
        assert len(dom.find("svg", plot)) == 1, f"{plot}: {len(dom.find('svg', plot))} svg"
        lines = dom.find("polyline", plot)
        assert len(lines) == (2 if plot == "plot-busy" else 1), f"{plot}: {len(lines)} series"
        xs = None
        for pl in lines:
            pts = [tuple(map(float, p.split(","))) for p in pl[1]["points"].split()]
            assert len(pts) == STEPS and pl[1]["data-points"] == str(STEPS), \
                f"{plot} {pl[1]['data-name']}: {len(pts)} points, want {STEPS}"
            assert all(b[0] > a[0] for a, b in zip(pts, pts[1:])), f"{plot}: x not rising"
            xs = [p[0] for p in pts]
        if plot == "plot-accuracy":
            dots = dom.find("circle", plot)
            assert len(dots) == evaluations >= 2, f"{len(dots)} test dots, {evaluations} evals"
        markers = {(m[1]["class"], m[1]["data-step"]): float(m[1]["x1"])
                   for m in dom.find("line", plot, "marker")}
        assert set(markers) == {("marker restart", "12"), ("marker rebalance", "20")}, \
            f"{plot}: markers {markers}"
        # A marker sits at its step's x: the series' x of steps 12 and 20.
        at = r["step_series"]["step"]
        assert abs(markers[("marker restart", "12")] - xs[at.index(12)]) < 0.02, f"{plot}: restart x"
        assert abs(markers[("marker rebalance", "20")] - xs[at.index(20)]) < 0.02, \
            f"{plot}: rebalance x"
    rows = {e[3].strip(): None for e in dom.find("tr", "config")}
    for want in ("model" + r["model"], "strategy" + r["strategy"]):
        assert want in rows, f"config table lacks {want!r}: {list(rows)[:6]}"
    assert len(dom.find("li", "events")) == 2, "the events list has the restart and rebalance"
    # Nothing leaves the page: no script, no link, no URL, CSP allowing nothing else.
    csp = [e[1]["content"] for e in dom.find("meta") if e[1].get("http-equiv") ==
           "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0], f"CSP: {csp}"
    assert not dom.find("script") and not dom.find("link") and not dom.find("img")
    assert not [e for e in dom.elements if "src" in e[1] or "href" in e[1]], "a src/href"
    urls = set(re.findall(r"\b(?:https?|ftp)://[^\s\"'<>]+", html)) - {"http://www.w3.org/2000/svg"}
    assert not urls, f"URLs in the page: {urls}"


def check_screenshot(page):
    shot = os.path.join(tmp, "page.png")
    browse(page, f"--screenshot={shot}", "--window-size=900,1400")
    w, h, rows = png_pixels(shot)
    pixels = [p for row in rows for p in row]
    inked = sum(1 for p in pixels if min(p) < 200) / len(pixels)
    colored = sum(1 for p in pixels if max(p) - min(p) > 80)
    print(f"screenshot {w}x{h}: {inked:.1%} inked, {colored} colored pixels")
    assert inked > 0.01 and colored > 500, "the screenshot is blank (no plots drawn)"


def bad_inputs(rep):
    missing = os.path.join(tmp, "missing.json")
    run(["report", missing], 2, missing)
    garbage = os.path.join(tmp, "garbage.json")
    open(garbage, "w").write("loss 0.3\n")
    run(["report", garbage], 2, [garbage, "not JSON"])
    other = os.path.join(tmp, "other.json")
    json.dump({"traceEvents": []}, open(other, "w"))
    run(["report", other], 2, [other, "not a troupe training report"])
    bad_out = "/nonexistent-dir/page.html"
    run(["report", rep, "--html", bad_out], 2, bad_out)


def main():
    rep, r = train()
    run(["report", rep], 0, ["model " + r["model"], r["strategy"], f"{STEPS} point(s)"])
    page = os.path.join(tmp, "page.html")
    run(["report", with_events(r), "--html", page], 0, page)
    check_page(page, r)
    check_screenshot(page)
    bad_inputs(rep)
    old = dict(r)
    del old["step_series"]
    json.dump(old, open(os.path.join(tmp, "old.json"), "w"))
    run(["report", os.path.join(tmp, "old.json"), "--html", page])
    assert 'id="no-series"' in open(page).read(), "a report without series says so"
    shutil.rmtree(tmp)
    print("report page test: ok")


main()
