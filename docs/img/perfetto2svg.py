#!/usr/bin/env python3
"""Draw a window of a Perfetto trace written by `ipcwatch export --format
perfetto` as an SVG timeline, the way ui.perfetto.dev lays it out: one row
per thread track, slices as boxes, instants as marks, flows as arrows.

The trace is decoded with Perfetto's own protobuf definitions (the PyPI
`perfetto` package's perfetto_trace_pb2, which `cargo xtask setup` installs
in ~/.cache/ipcwatch/perfetto-venv), so the picture shows what Perfetto
reads, not what ipcwatch meant to write.

    perfetto2svg.py TRACE.pftrace [--window-ms MS] [--center race|NS] > out.svg

--center race (the default) centres the window on the first race instant.
"""

import argparse
import html
import sys

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

SLICE_BEGIN, SLICE_END, INSTANT = 1, 2, 3
COLOURS = {
    "pipe": "#4e79a7",
    "fifo": "#4e79a7",
    "unix": "#59a14f",
    "tcp": "#59a14f",
    "udp": "#59a14f",
    "mq": "#b07aa1",
    "msgq": "#b07aa1",
    "lock": "#f28e2b",
    "fault": "#9c755f",
    "race": "#e15759",
}


def load(path):
    trace = pb.Trace()
    with open(path, "rb") as f:
        trace.ParseFromString(f.read())
    names, parents, slices, instants = {}, {}, [], []
    flow_from, flow_to = {}, {}
    open_slices = {}
    for p in trace.packet:
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            if d.HasField("thread"):
                t = d.thread
                names[d.uuid] = f"{t.thread_name} {t.pid}/{t.tid}"
                parents[d.uuid] = d.parent_uuid
            continue
        if not p.HasField("track_event"):
            continue
        e, ts = p.track_event, p.timestamp
        cat = e.categories[0] if e.categories else ""
        if e.type == SLICE_BEGIN:
            open_slices.setdefault(e.track_uuid, []).append((ts, e.name, cat, list(e.flow_ids), list(e.terminating_flow_ids)))
        elif e.type == SLICE_END:
            stack = open_slices.get(e.track_uuid)
            if stack:
                start, name, cat, out, end = stack.pop()
                slices.append((e.track_uuid, start, ts, name, cat))
                for f in out:
                    flow_from[f] = (e.track_uuid, ts, cat)
                for f in end:
                    flow_to[f] = (e.track_uuid, start)
        elif e.type == INSTANT:
            instants.append((e.track_uuid, ts, e.name, cat))
            for f in e.flow_ids:
                flow_from[f] = (e.track_uuid, ts, cat)
            for f in e.terminating_flow_ids:
                flow_to[f] = (e.track_uuid, ts)
    flows = [(flow_from[f], flow_to[f]) for f in flow_from if f in flow_to]
    return names, slices, instants, flows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--window-ms", type=float, default=40.0)
    ap.add_argument("--center", default="race")
    a = ap.parse_args()
    names, slices, instants, flows = load(a.trace)
    if a.center == "race":
        races = [ts for (_, ts, _, cat) in instants if cat == "race"]
        if not races:
            sys.exit("perfetto2svg: no race instant in the trace")
        center = min(races)
    else:
        center = int(a.center)
    half = int(a.window_ms * 1e6 / 2)
    lo, hi = center - half, center + half

    def seen(t0, t1=None):
        return (t1 if t1 is not None else t0) >= lo and t0 <= hi

    rows = sorted(
        {u for (u, s, e, _, _) in slices if seen(s, e)} | {u for (u, ts, _, _) in instants if seen(ts)},
        key=lambda u: names.get(u, ""),
    )
    label_w, width, row_h, top = 230, 1100, 24, 46
    plot_w = width - label_w - 20
    height = top + row_h * len(rows) + 40
    y_of = {u: top + i * row_h for i, u in enumerate(rows)}

    def x(ts):
        return label_w + (min(max(ts, lo), hi) - lo) * plot_w / (hi - lo)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="DejaVu Sans Mono, monospace" font-size="11">',
        '<defs><marker id="arrow" viewBox="0 0 6 6" refX="6" refY="3" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="#555"/></marker>'
        '<marker id="red" viewBox="0 0 6 6" refX="6" refY="3" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="#e15759"/></marker></defs>',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="18" font-size="13" font-weight="bold">{html.escape(a.trace.split("/")[-1])}: '
        f'{a.window_ms:g} ms around the race (ipcwatch export --format perfetto)</text>',
    ]
    # Time axis: a tick every tenth of the window, in ms from the centre.
    for i in range(11):
        ts = lo + (hi - lo) * i // 10
        xx = x(ts)
        out.append(f'<line x1="{xx:.1f}" y1="{top - 8}" x2="{xx:.1f}" y2="{height - 30}" stroke="#eee"/>')
        out.append(f'<text x="{xx:.1f}" y="{top - 12}" text-anchor="middle" fill="#666">{(ts - center) / 1e6:+.0f} ms</text>')
    for u in rows:
        y = y_of[u]
        out.append(f'<rect x="0" y="{y}" width="{width}" height="{row_h}" fill="{"#fafafa" if rows.index(u) % 2 else "white"}"/>')
        out.append(f'<text x="8" y="{y + 16}">{html.escape(names.get(u, str(u)))}</text>')
    for (u, s, e, name, cat) in slices:
        if u in y_of and seen(s, e):
            x0, x1 = x(s), x(e)
            out.append(
                f'<rect x="{x0:.1f}" y="{y_of[u] + 4}" width="{max(x1 - x0, 1.5):.1f}" height="{row_h - 8}" '
                f'fill="{COLOURS.get(cat, "#999")}" opacity="0.85"><title>{html.escape(name)} '
                f'({(e - s) / 1e3:.1f} µs)</title></rect>'
            )
    for ((fu, fts, cat), (tu, tts)) in flows:
        if fu in y_of and tu in y_of and (seen(fts) or seen(tts)):
            red = cat == "race"
            out.append(
                f'<line x1="{x(fts):.1f}" y1="{y_of[fu] + row_h / 2}" x2="{x(tts):.1f}" y2="{y_of[tu] + row_h / 2}" '
                f'stroke="{"#e15759" if red else "#555"}" stroke-width="{2 if red else 0.6}" '
                f'opacity="{1 if red else 0.5}" marker-end="url(#{"red" if red else "arrow"})"/>'
            )
    for (u, ts, name, cat) in instants:
        if u in y_of and seen(ts):
            xx, yy = x(ts), y_of[u] + row_h / 2
            out.append(
                f'<path d="M{xx:.1f},{yy - 8} L{xx + 6:.1f},{yy} L{xx:.1f},{yy + 8} L{xx - 6:.1f},{yy} z" '
                f'fill="{COLOURS.get(cat, "#333")}" stroke="black" stroke-width="0.8"><title>{html.escape(name)}</title></path>'
            )
            if cat == "race":
                out.append(f'<text x="{xx + 9:.1f}" y="{yy + 4}" fill="#e15759" font-weight="bold">{html.escape(name)}</text>')
    ly = height - 14
    lx = label_w
    for cat, label in [("pipe", "pipe read/write"), ("unix", "socket"), ("mq", "message queue"), ("lock", "lock/futex wait"), ("race", "race (the two writes)")]:
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="12" height="10" fill="{COLOURS[cat]}"/>')
        out.append(f'<text x="{lx + 16}" y="{ly}">{label}</text>')
        lx += 30 + 7 * len(label)
    out.append("</svg>")
    print("\n".join(out))


if __name__ == "__main__":
    main()
