"""A small SVG writer for bench/compare: throughput and latency percentiles
side by side, one bar per server (median, with a whisker from the lowest to
the highest round); for proxy-failover, the failed sessions and the
throughput around the kill (every trial, in % of its pre-kill rate).
Standard library only; the output is a standalone SVG file any browser
shows.
"""

import math
from xml.sax.saxutils import escape

COLORS = {"postern": "#2b6cb0", "peer": "#dd6b20", "floor": "#718096"}
W, H = 960, 420
PANEL_W = 440
TOP, BOTTOM = 70, 330


def _num(v):
    if v is None:
        return "n/a"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    return "%.3f" % v


class Svg:
    def __init__(self, w, h):
        self.parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
                      'viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">' % (w, h, w, h),
                      '<rect width="100%" height="100%" fill="white"/>']

    def rect(self, x, y, w, h, fill, extra=""):
        self.parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" %s/>'
                          % (x, y, max(w, 0), max(h, 0), fill, extra))

    def line(self, x1, y1, x2, y2, stroke="#333", width=1, extra=""):
        self.parts.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" '
                          'stroke-width="%s" %s/>' % (x1, y1, x2, y2, stroke, width, extra))

    def text(self, x, y, s, anchor="middle", size=12, weight="normal", fill="#222"):
        self.parts.append('<text x="%.1f" y="%.1f" text-anchor="%s" font-size="%d" '
                          'font-weight="%s" fill="%s">%s</text>'
                          % (x, y, anchor, size, weight, fill, escape(str(s))))

    def done(self):
        return "\n".join(self.parts + ["</svg>"]) + "\n"


def _scale(vmax, log, vmin_pos):
    """A function value -> y, and tick values."""
    if log:
        lo = 10 ** math.floor(math.log10(max(vmin_pos, 1e-6)))
        hi = 10 ** math.ceil(math.log10(max(vmax, lo * 10)))
        def y(v):
            v = max(v, lo)
            return BOTTOM - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * (BOTTOM - TOP)
        ticks = []
        t = lo
        while t <= hi * 1.0001:
            ticks.append(t)
            t *= 10
        return y, ticks
    hi = vmax * 1.15 if vmax > 0 else 1.0
    step = 10 ** math.floor(math.log10(hi))
    while hi / step < 4:
        step /= 2
    def y(v):
        return BOTTOM - max(v, 0) / hi * (BOTTOM - TOP)
    ticks = [i * step for i in range(int(hi / step) + 1)]
    return y, ticks


def _panel(svg, x0, title, groups, series, log=False, unit=""):
    """groups: [label]; series: [(name, role, [stat or None per group])]."""
    vals = []
    for _, _, stats in series:
        for s in stats:
            if s:
                vals.append(s["max"] if s.get("max") is not None else s["median"])
    vmax = max(vals) if vals else 1.0
    vmin_pos = min([v for v in vals if v > 0] or [1.0])
    y, ticks = _scale(vmax, log, vmin_pos)
    left = x0 + 50
    right = x0 + PANEL_W
    svg.text((left + right) / 2, TOP - 30, title, size=14, weight="bold")
    for t in ticks:
        yy = y(t)
        if yy < TOP - 1:
            continue
        svg.line(left, yy, right, yy, stroke="#e2e8f0")
        svg.text(left - 6, yy + 4, _num(t), anchor="end", size=10, fill="#555")
    svg.line(left, TOP, left, BOTTOM)
    svg.line(left, BOTTOM, right, BOTTOM)
    if unit:
        svg.text(x0 + 8, TOP - 8, unit, anchor="start", size=10, fill="#555")
    ng, ns = max(len(groups), 1), max(len(series), 1)
    gw = (right - left) / ng
    bw = min(36, gw * 0.8 / ns)
    for gi, g in enumerate(groups):
        gx = left + gi * gw + (gw - bw * ns) / 2
        for si, (name, role, stats) in enumerate(series):
            s = stats[gi]
            bx = gx + si * bw
            color = COLORS.get(role, "#999")
            if s is None:
                svg.rect(bx + 2, BOTTOM - 40, bw - 4, 40, "none",
                         'stroke="%s" stroke-dasharray="3,3"' % color)
                svg.text(bx + bw / 2, BOTTOM - 44, "n/a", size=9, fill=color)
                continue
            top = y(s["median"])
            svg.rect(bx + 2, top, bw - 4, BOTTOM - top, color)
            if s.get("min") is not None and s.get("max") is not None:
                cx = bx + bw / 2
                svg.line(cx, y(s["min"]), cx, y(s["max"]), stroke="#111", width=1.5)
                svg.line(cx - 4, y(s["min"]), cx + 4, y(s["min"]), stroke="#111")
                svg.line(cx - 4, y(s["max"]), cx + 4, y(s["max"]), stroke="#111")
            svg.text(bx + bw / 2, top - 5, _num(s["median"]), size=9)
        svg.text(left + gi * gw + gw / 2, BOTTOM + 16, g, size=11)


SERIES_FROM_MS, SERIES_TO_MS = -300, 700


def _series_panel(svg, x0, doc, order):
    """Throughput per bucket around the kill, one line per trial, in % of
    that trial's pre-kill rate; the 50 % line dashed."""
    left, right = x0 + 50, x0 + PANEL_W
    svg.text((left + right) / 2, TOP - 30, "throughput around the kill (% of before)",
             size=14, weight="bold")
    top_pct = 150.0

    def xy(ms, pct):
        x = left + (ms - SERIES_FROM_MS) / float(SERIES_TO_MS - SERIES_FROM_MS) * (right - left)
        y = BOTTOM - min(max(pct, 0.0), top_pct) / top_pct * (BOTTOM - TOP)
        return x, y
    for pct in (0, 50, 100, 150):
        _, yy = xy(0, pct)
        svg.line(left, yy, right, yy, stroke="#e2e8f0" if pct != 50 else "#a0aec0",
                 extra='stroke-dasharray="4,3"' if pct == 50 else "")
        svg.text(left - 6, yy + 4, "%d" % pct, anchor="end", size=10, fill="#555")
    for ms in range(SERIES_FROM_MS, SERIES_TO_MS + 1, 100):
        xx, _ = xy(ms, 0)
        svg.text(xx, BOTTOM + 16, "%d" % ms, size=10, fill="#555")
    kx, _ = xy(0, 0)
    svg.line(kx, TOP, kx, BOTTOM, stroke="#c53030", extra='stroke-dasharray="2,2"')
    svg.text(kx + 4, TOP + 10, "kill", anchor="start", size=10, fill="#c53030")
    svg.text(right, BOTTOM + 30, "ms from the kill", anchor="end", size=10, fill="#555")
    svg.line(left, TOP, left, BOTTOM)
    svg.line(left, BOTTOM, right, BOTTOM)
    for n in order:
        t = doc["targets"][n]
        color = COLORS.get(t["role"], "#999")
        for res in t.get("trials", []):
            se, fo = res.get("series"), res.get("failover")
            if not se or not fo or not fo.get("valid"):
                continue
            bms = se["bucket_ms"]
            kill_ms = fo["kill_at_s"] * 1000.0
            per_bucket = fo["rate_before"] * bms / 1000.0
            pts = []
            for i, v in enumerate(se["completed"][:-1]):
                ms = i * bms + bms / 2.0 - kill_ms
                if SERIES_FROM_MS <= ms <= SERIES_TO_MS and per_bucket > 0:
                    pts.append("%.1f,%.1f" % xy(ms, 100.0 * v / per_bucket))
            if pts:
                svg.parts.append('<polyline fill="none" stroke="%s" stroke-width="1.2" '
                                 'stroke-opacity="0.7" points="%s"/>' % (color, " ".join(pts)))


def chart(doc):
    """The SVG text for a bench/compare result document."""
    rows = doc["figures"]
    targets = doc["targets"]
    order = ["postern", doc["peer"]] + ([doc["floor"]] if doc.get("floor") else [])
    svg = Svg(W, H)
    svg.text(W / 2, 22, "%s: %s" % (doc["scenario"], doc["about"]), size=15, weight="bold")
    if not rows:
        svg.text(W / 2, H / 2, "no figures")
        return svg.done()

    def stats_of(fig):
        row = next((r for r in rows if r["figure"] == fig), None)
        return [row.get(n) if row else None for n in order]

    def series_for(figs):
        out = []
        for i, n in enumerate(order):
            out.append((n, targets[n]["role"], [stats_of(f)[i] for f in figs]))
        return out

    first = rows[0]["figure"]
    if first == "sessions/s before the kill":
        figs = ["failed new (before greeting)", "failed in flight (after greeting)"]
        _panel(svg, 10, "sessions failed per trial", ["new", "in flight"], series_for(figs))
        _series_panel(svg, 500, doc, order)
    elif first == "held connections":
        left_fig = "PSS bytes/conn (over fresh)"
        right_figs = ["RSS bytes/conn (over fresh)"]
        _panel(svg, 10, "PSS per idle connection (bytes)", [""], series_for([left_fig]))
        _panel(svg, 500, "RSS per idle connection (bytes)", [""], series_for(right_figs))
    else:
        _panel(svg, 10, "throughput: " + first, [first], series_for([first]))
        pct = [r["figure"] for r in rows
               if r["figure"].endswith(" ms") and " p" in r["figure"] and "added" not in r["figure"]]
        labels = [f.split(" ")[1] for f in pct]
        _panel(svg, 500, "latency per %s (ms, log scale)" % (pct[0].split(" ")[0] if pct else "unit"),
               labels, series_for(pct), log=True)
    # legend
    lx = 60
    for n in order:
        t = targets[n]
        color = COLORS.get(t["role"], "#999")
        svg.rect(lx, H - 40, 14, 14, color)
        label = n + ("" if t["available"] else " (not available)")
        if t["role"] == "floor":
            label += " (floor)"
        svg.text(lx + 20, H - 29, label, anchor="start")
        lx += 40 + 8 * len(label)
    svg.text(W - 10, H - 10, "bars: median of %d rounds; whiskers: lowest to highest round; %s"
             % (doc["settings"]["rounds"], doc["date"]), anchor="end", size=10, fill="#555")
    return svg.done()
