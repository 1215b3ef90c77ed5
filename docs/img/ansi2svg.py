#!/usr/bin/env python3
"""Turn a terminal screen captured with `tmux capture-pane -e -p` into SVG.

Usage: ansi2svg.py SCREEN.ansi OUT.svg [COLUMNS ROWS]

Reads the SGR sequences tmux writes (bold, dim, reverse, the 8/16 colours,
256 colours and 24-bit colours, for the foreground and background) and draws
one monospace cell per character. Standard library only. How the pictures of
docs/ were made: docs/img/README.md.
"""

import html
import re
import sys

BASE = [
    "#1e1e1e", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
    "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
]
FG, BG = "#d4d4d4", "#1e1e1e"
CW, CH = 8.4, 17  # cell width and height, px
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def color256(n):
    if n < 16:
        return BASE[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return "#%02x%02x%02x" % (steps[n // 36], steps[(n // 6) % 6], steps[n % 6])
    v = 8 + (n - 232) * 10
    return "#%02x%02x%02x" % (v, v, v)


def apply(state, params):
    p = [int(x) if x else 0 for x in params.split(";")] if params else [0]
    i = 0
    while i < len(p):
        c = p[i]
        if c == 0:
            state.update(fg=None, bg=None, bold=False, dim=False, rev=False)
        elif c == 1:
            state["bold"] = True
        elif c == 2:
            state["dim"] = True
        elif c == 7:
            state["rev"] = True
        elif c == 22:
            state.update(bold=False, dim=False)
        elif c == 27:
            state["rev"] = False
        elif 30 <= c <= 37:
            state["fg"] = BASE[c - 30]
        elif 90 <= c <= 97:
            state["fg"] = BASE[c - 90 + 8]
        elif 40 <= c <= 47:
            state["bg"] = BASE[c - 40]
        elif 100 <= c <= 107:
            state["bg"] = BASE[c - 100 + 8]
        elif c == 39:
            state["fg"] = None
        elif c == 49:
            state["bg"] = None
        elif c in (38, 48) and i + 1 < len(p):
            key = "fg" if c == 38 else "bg"
            if p[i + 1] == 5 and i + 2 < len(p):
                state[key] = color256(p[i + 2])
                i += 2
            elif p[i + 1] == 2 and i + 4 < len(p):
                state[key] = "#%02x%02x%02x" % tuple(p[i + 2 : i + 5])
                i += 4
        i += 1


def cells(text):
    """Rows of (char, fg, bg, bold, dim)."""
    rows = []
    state = dict(fg=None, bg=None, bold=False, dim=False, rev=False)
    for line in text.split("\n"):
        row = []
        pos = 0
        for m in SGR.finditer(line):
            for ch in line[pos : m.start()]:
                row.append(cell(ch, state))
            apply(state, m.group(1))
            pos = m.end()
        for ch in line[pos:]:
            row.append(cell(ch, state))
        rows.append(row)
    return rows


def cell(ch, s):
    fg, bg = s["fg"] or FG, s["bg"] or BG
    if s["rev"]:
        fg, bg = bg, fg
    return (ch, fg, bg, s["bold"], s["dim"])


def svg(rows, cols, nrows):
    w, h = cols * CW, nrows * CH
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h + 8:.0f}" '
        f'viewBox="0 0 {w:.0f} {h + 8:.0f}">',
        f'<rect width="100%" height="100%" fill="{BG}"/>',
        '<g font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="14px" '
        'xml:space="preserve">',
    ]
    for y, row in enumerate(rows[:nrows]):
        top = 4 + y * CH
        # Backgrounds, as runs.
        x = 0
        while x < len(row):
            bg = row[x][2]
            end = x
            while end < len(row) and row[end][2] == bg:
                end += 1
            if bg != BG:
                out.append(
                    f'<rect x="{x * CW:.1f}" y="{top}" width="{(end - x) * CW:.1f}" '
                    f'height="{CH}" fill="{bg}"/>'
                )
            x = end
        # Text, one element per run of one style; each character at its cell.
        x = 0
        while x < len(row):
            style = row[x][1], row[x][3], row[x][4]
            end = x
            while end < len(row) and (row[end][1], row[end][3], row[end][4]) == style:
                end += 1
            text = "".join(c[0] for c in row[x:end])
            if text.strip():
                fg, bold, dim = style
                attrs = f' fill="{fg}"'
                if bold:
                    attrs += ' font-weight="bold"'
                if dim:
                    attrs += ' opacity="0.6"'
                xs = " ".join(f"{(x + i) * CW:.1f}" for i in range(end - x))
                out.append(
                    f'<text x="{xs}" y="{top + CH - 4}"{attrs}>{html.escape(text)}</text>'
                )
            x = end
    out.append("</g></svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) not in (3, 5):
        sys.exit(__doc__)
    text = open(sys.argv[1], encoding="utf-8").read().rstrip("\n")
    rows = cells(text)
    cols = int(sys.argv[3]) if len(sys.argv) == 5 else max(len(r) for r in rows)
    nrows = int(sys.argv[4]) if len(sys.argv) == 5 else len(rows)
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write(svg(rows, cols, nrows))


if __name__ == "__main__":
    main()
