"""The block diagram as SVG, written by hand: each block with its availability, and a bar
chart of what each block costs (its gain if it never failed). Pure: returns the text."""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from ninelives.model.blocks import YEAR_S, Block, Component, Series, availability
from ninelives.model.report import Prediction
from ninelives.units import format_duration
from ninelives.uptime.nines import format_percent

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 150, 40, 24, 14, 12
FONT = "font-family='sans-serif' font-size='11'"
COMPONENT = ("#eef4fb", "#2b6cb0")  # fill, stroke
COMMON_CAUSE = ("#fdf0e6", "#c05621")  # the failures a group with beta shares


@dataclass(frozen=True, slots=True)
class _Size:
    width: float
    height: float


def _size(block: Block) -> _Size:
    if isinstance(block, Component):
        return _Size(BOX_W, BOX_H)
    sizes = [_size(child) for child in block.children]
    title = _text_width(f"{block.label}: 99.999999%") + 2 * PAD
    if isinstance(block, Series):
        return _Size(max(title, sum(s.width for s in sizes) + GAP_X * (len(sizes) - 1) + 2 * PAD),
                     max(s.height for s in sizes) + 2 * PAD + 14)
    return _Size(max(title, max(s.width for s in sizes) + 2 * PAD),
                 sum(s.height for s in sizes) + GAP_Y * (len(sizes) - 1) + 2 * PAD + 14)


def _text_width(text: str) -> float:
    """About how wide ``text`` is at 11px sans-serif (no font metrics without a renderer)."""
    return 6.2 * len(text)


def _draw(block: Block, x: float, y: float, out: list[str]) -> _Size:
    size = _size(block)
    value = format_percent(availability(block))
    if isinstance(block, Component):
        fill, stroke = COMMON_CAUSE if block.note == "common cause" else COMPONENT
        out.append(f"<rect x='{x}' y='{y}' width='{BOX_W}' height='{BOX_H}' rx='4' "
                   f"fill='{fill}' stroke='{stroke}'/>")
        out.append(f"<text x='{x + BOX_W / 2}' y='{y + 16}' text-anchor='middle' {FONT}>"
                   f"{escape(block.label)}</text>")
        out.append(f"<text x='{x + BOX_W / 2}' y='{y + 31}' text-anchor='middle' {FONT}>"
                   f"{value}</text>")
        return size
    out.append(f"<rect x='{x}' y='{y}' width='{size.width}' height='{size.height}' rx='6' "
               "fill='none' stroke='#999' stroke-dasharray='4 3'/>")
    out.append(f"<text x='{x + PAD}' y='{y + 14}' {FONT} fill='#555'>"
               f"{escape(block.label)}: {value}</text>")
    cx, cy = x + PAD, y + PAD + 14
    inner_h = size.height - 2 * PAD - 14
    for index, child in enumerate(block.children):
        child_size = _size(child)
        if isinstance(block, Series):
            top = cy + (inner_h - child_size.height) / 2
            _draw(child, cx, top, out)
            if index < len(block.children) - 1:
                mid = cy + inner_h / 2
                out.append(f"<line x1='{cx + child_size.width}' y1='{mid}' "
                           f"x2='{cx + child_size.width + GAP_X}' y2='{mid}' stroke='#333'/>")
            cx += child_size.width + GAP_X
        else:
            _draw(child, cx, cy, out)
            cy += child_size.height + GAP_Y
    return size


def svg(root: Block, prediction: Prediction, bars: int = 15) -> str:
    """The diagram above the contribution bars of the ``bars`` weakest blocks."""
    diagram: list[str] = []
    size = _draw(root, 10, 40, diagram)
    head = (f"System availability {format_percent(prediction.availability)}, "
            f"{format_duration(round(prediction.downtime_per_year_s))} down a year")
    shown = prediction.blocks[:bars]
    top = 40 + size.height + 40
    bar_w = 360.0
    biggest = max((block.gain for block in shown), default=0.0) or 1.0
    label_w = 20 + max((_text_width(f"{b.label} ({b.path})") for b in shown), default=0.0)
    width = max(size.width + 20, label_w + bar_w + 140)
    height = top + 24 + 20 * len(shown) + 10
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' height='{height:.0f}' "
        f"viewBox='0 0 {width:.0f} {height:.0f}'>",
        "<rect width='100%' height='100%' fill='white'/>",
        f"<text x='10' y='24' font-family='sans-serif' font-size='15'>{escape(head)}</text>",
        *diagram,
        f"<text x='10' y='{top}' font-family='sans-serif' font-size='13'>"
        "Gain a year if the block never failed</text>",
    ]
    for index, block in enumerate(shown):
        y = top + 12 + 20 * index
        length = bar_w * block.gain / biggest
        out.append(f"<text x='10' y='{y + 12}' {FONT}>{escape(block.label)} "
                   f"({escape(block.path)})</text>")
        out.append(f"<rect x='{label_w}' y='{y + 2}' width='{length:.1f}' height='13' "
                   "fill='#c53030'/>")
        out.append(f"<text x='{label_w + length + 6:.1f}' y='{y + 12}' {FONT}>"
                   f"{format_duration(round(block.gain * YEAR_S, 1))}</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
