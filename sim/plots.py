"""Report plots of one scenario run: a timeline and a bird's-eye view of tracks against truth.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, no global backend
switch, no display needed) and saved as PNG files that the HTML and Markdown reports reference
by relative path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from sim.results import STATE_NAMES, FloatArray, ScenarioResult

__all__ = [
    "IMPACT_COLOURS",
    "STATE_COLOURS",
    "PlotSettings",
    "ground_figure",
    "save_plots",
    "timeline_figure",
]

#: Health-state band colours: green → amber → orange → blue (human drives) → red.
STATE_COLOURS: dict[str, str] = {
    "NOMINAL": "#2e9d4f",
    "DEGRADED": "#f2b705",
    "TAKEOVER_REQUESTED": "#f57c00",
    "MANUAL": "#1f6fd1",
    "MINIMAL_RISK": "#d62828",
}
#: Finding marker colours by claimed impact.
IMPACT_COLOURS: dict[str, str] = {
    "info": "#7a7a7a",
    "channel": "#f2b705",
    "system": "#f57c00",
    "critical": "#d62828",
}
_FAULT_COLOUR = "#8e44ad"
_CHANNEL_COLOURS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_ACTOR_COLOURS = ("#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
_MAX_FAULT_LANES = 6


@dataclass(frozen=True)
class PlotSettings:
    """What the plots judge against: the position tolerance and the critical zone (ego frame)."""

    position_m: float | None = None
    zone_x: tuple[float, float] | None = None
    zone_y: tuple[float, float] | None = None
    dpi: int = 100


def _printable(text: str) -> str:
    """User text safe for a plot: control characters (no glyphs) become "?" and "$" is
    escaped so matplotlib does not parse it as mathtext."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(text)).replace("$", r"\$")


def _runs(codes: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, stop, code) of each run of equal consecutive values."""
    if codes.size == 0:
        return []
    cut = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate([[0], cut])
    stops = np.concatenate([cut, [codes.size]])
    return [(int(a), int(b), int(codes[a])) for a, b in zip(starts, stops, strict=True)]


def _edges(t: FloatArray) -> FloatArray:
    """Step boundaries: step i lasts from t[i] to t[i+1] (the last repeats the previous gap)."""
    if t.size == 0:
        return np.zeros(1)
    dt = np.diff(t)
    last = dt[-1] if dt.size else 1.0
    return np.append(t, t[-1] + last)


def timeline_figure(result: ScenarioResult, settings: PlotSettings | None = None) -> Figure:
    """Health-state band, fault windows, findings, takeover request/deadline, human action and
    MRM on shared time axes above the output's position error against the tolerance."""
    st = settings or PlotSettings()
    s = result.series
    t = s.t
    edges = _edges(t)
    t_end = float(edges[-1]) if t.size else 1.0
    faults = result.fault_windows
    # one lane per (kind, channel): repeated or intermittent faults share a lane
    lane_of = {f.index: (f"{f.kind} on {f.channel}" if f.channel else f.kind) for f in faults}
    all_rows = list(dict.fromkeys(lane_of[f.index] for f in sorted(faults, key=lambda f: f.onset)))
    fault_rows = all_rows[:_MAX_FAULT_LANES]
    more_faults = len(all_rows) > len(fault_rows)

    fig = Figure(figsize=(11.0, 6.6), dpi=st.dpi, layout="constrained")
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(2, 1, height_ratios=[1.25 + 0.18 * len(fault_rows), 1.0])
    ax = fig.add_subplot(gs[0])
    ax_err = fig.add_subplot(gs[1], sharex=ax)

    # lanes, top to bottom
    lanes = ["health state", *[f"fault: {n}" for n in fault_rows], "findings",
             "takeover / MRM"]
    y = {name: len(lanes) - 1 - k for k, name in enumerate(lanes)}
    h = 0.7

    for a, b, code in _runs(s.state.astype(np.int64)):
        x0, x1 = float(edges[a]), float(edges[b])
        ax.add_patch(
            Rectangle(
                (x0, y["health state"] - h / 2), x1 - x0, h,
                facecolor=STATE_COLOURS[STATE_NAMES[code]], edgecolor="none",
            )
        )
    for f in faults:
        row = lane_of[f.index]
        if row not in fault_rows:
            continue
        lane = y[f"fault: {row}"]
        end = t_end if f.end is None else min(float(f.end), t_end)
        ax.add_patch(
            Rectangle(
                (f.onset, lane - h / 2), max(end - f.onset, 1e-3), h,
                facecolor=_FAULT_COLOUR, alpha=0.35, edgecolor=_FAULT_COLOUR, hatch="//",
            )
        )
    ax.set_yticks([y[n] for n in lanes], [_printable(n) for n in lanes])

    raised = [r for r in result.findings if r.event == "raised"]
    cleared = [r for r in result.findings if r.event == "cleared"]
    yf = y["findings"]
    for impact, colour in IMPACT_COLOURS.items():
        ts = [r.t for r in raised if r.impact == impact]
        if ts:
            ax.scatter(ts, np.full(len(ts), yf), marker="v", s=46, color=colour,
                       edgecolors="black", linewidths=0.5, zorder=3)
    if cleared:
        ax.scatter([r.t for r in cleared], np.full(len(cleared), yf - 0.22), marker="o", s=18,
                   facecolors="none", edgecolors="#555555", linewidths=0.8, zorder=3)
    labelled: dict[str, float] = {}
    near = 0.12 * max(t_end - (float(edges[0]) if t.size else 0.0), 1e-9)
    for r in raised:  # name the first finding of each kind (a few, stacked so they don't overlap)
        if r.kind in labelled or len(labelled) >= 6:
            continue
        level = sum(abs(r.t - x) < near for x in labelled.values())
        labelled[r.kind] = r.t
        ax.annotate(_printable(r.kind), (r.t, yf), xytext=(-3, 7 + 9 * level),
                    textcoords="offset points", fontsize=7, color="#333333")

    yt = y["takeover / MRM"]
    vlines: list[tuple[float, str, str]] = []
    for e in result.takeover_events:
        if e.event == "issued":
            ax.scatter([e.t], [yt], marker=">", s=70, color=STATE_COLOURS["TAKEOVER_REQUESTED"],
                       edgecolors="black", linewidths=0.5, zorder=3)
            vlines.append((e.t, STATE_COLOURS["TAKEOVER_REQUESTED"], "-"))
            if e.deadline is not None:
                acks = [a.t for a in result.takeover_events
                        if a.event == "acknowledged" and e.t <= a.t <= e.deadline]
                until = min(acks, default=e.deadline)
                ax.add_patch(Rectangle((e.t, yt - h / 4), until - e.t, h / 2,
                                       facecolor=STATE_COLOURS["TAKEOVER_REQUESTED"], alpha=0.25,
                                       edgecolor="none"))
                ax.scatter([e.deadline], [yt], marker="|", s=200, color="black", zorder=3)
                vlines.append((e.deadline, "black", "--"))
        elif e.event == "acknowledged":
            ax.scatter([e.t], [yt], marker="*", s=140, color=STATE_COLOURS["MANUAL"],
                       edgecolors="black", linewidths=0.5, zorder=4)
        elif e.event == "mrm":
            ax.scatter([e.t], [yt], marker="s", s=50, color=STATE_COLOURS["MINIMAL_RISK"],
                       edgecolors="black", linewidths=0.5, zorder=4)
    for x, colour, style in vlines:
        for a_ in (ax, ax_err):
            a_.axvline(x, color=colour, linestyle=style, linewidth=1.0, alpha=0.8)

    if more_faults:
        ax.text(1.0, 1.01, "(more faults not shown)", transform=ax.transAxes, ha="right",
                fontsize=7)
    ax.set_ylim(-0.6, len(lanes) - 0.4)
    ax.set_xlim(float(edges[0]) if t.size else 0.0, t_end)
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(labelbottom=False)
    ax.set_title(f"{_printable(result.name)} — seed {result.seed} — "
                 f"{'PASS' if result.passed else 'FAIL'}", fontsize=11, loc="left")

    handles: list[Patch | Line2D] = [
        Patch(facecolor=STATE_COLOURS[n], label=n) for n in STATE_NAMES
    ]
    handles += [
        Patch(facecolor=_FAULT_COLOUR, alpha=0.35, hatch="//", label="injected fault"),
        Line2D([], [], marker="v", linestyle="", color=IMPACT_COLOURS["channel"],
               markeredgecolor="black", label="finding raised (colour: impact)"),
        Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
               markeredgecolor="#555555", label="finding cleared"),
        Line2D([], [], marker=">", linestyle="", color=STATE_COLOURS["TAKEOVER_REQUESTED"],
               markeredgecolor="black", label="takeover requested"),
        Line2D([], [], color="black", linestyle="--", label="takeover deadline"),
        Line2D([], [], marker="*", linestyle="", markersize=11, color=STATE_COLOURS["MANUAL"],
               markeredgecolor="black", label="human took over"),
        Line2D([], [], marker="s", linestyle="", color=STATE_COLOURS["MINIMAL_RISK"],
               markeredgecolor="black", label="minimal-risk manoeuvre"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8,
              frameon=False, borderaxespad=0.0)

    # position error against the tolerance
    per = result.metrics.per_step
    err = per.max_error
    ax_err.plot(t, err, color="#222222", linewidth=1.3, label="largest position error")
    if st.position_m is not None:
        ax_err.axhline(st.position_m, color=STATE_COLOURS["MINIMAL_RISK"], linestyle="--",
                       linewidth=1.2, label=f"tolerance {st.position_m:g} m")
    finite = err[np.isfinite(err)]
    top = max(float(finite.max()) if finite.size else 0.0, st.position_m or 0.0, 0.5) * 1.2
    for a, b, code in _runs(per.silent.astype(np.int64)):
        if code:
            ax_err.axvspan(float(edges[a]), float(edges[b]), color=STATE_COLOURS["MINIMAL_RISK"],
                           alpha=0.2, linewidth=0)
    miss = per.missing > 0
    if miss.any():
        ax_err.scatter(t[miss], np.full(int(miss.sum()), top * 0.95), marker="x", s=16,
                       color="#b00020", linewidths=1.0, zorder=3)
    ax_err.set_ylim(0.0, top)
    ax_err.set_ylabel("position error (m)")
    ax_err.set_xlabel("simulated time (s)")
    ax_err.grid(alpha=0.3)
    err_handles = [
        Line2D([], [], color="#222222", label="largest error, critical-zone actors"),
        Line2D([], [], color=STATE_COLOURS["MINIMAL_RISK"], linestyle="--",
               label="position tolerance" + (f" ({st.position_m:g} m)" if st.position_m else "")),
        Line2D([], [], marker="x", linestyle="", color="#b00020", label="actor missing"),
        Patch(facecolor=STATE_COLOURS["MINIMAL_RISK"], alpha=0.2, label="silent failure"),
    ]
    ax_err.legend(handles=err_handles, loc="upper left", bbox_to_anchor=(1.005, 1.0),
                  fontsize=8, frameon=False, borderaxespad=0.0)
    return fig


def ground_figure(result: ScenarioResult, settings: PlotSettings | None = None) -> Figure:
    """Bird's-eye view in the ego frame: truth paths, output objects (corroborated or not) and
    each channel's confirmed tracks, with the critical zone."""
    st = settings or PlotSettings()
    s = result.series
    fig = Figure(figsize=(11.0, 4.6), dpi=st.dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)

    if st.zone_x is not None and st.zone_y is not None:
        (x0, x1), (y0, y1) = st.zone_x, st.zone_y
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor="#fff3cd",
                               edgecolor="#b8860b", linestyle="--", linewidth=1.0,
                               label="critical zone", zorder=0))
    for j, name in enumerate(s.channels):
        ps = s.tracks.get(name)
        if ps is None or ps.pos.shape[0] == 0:
            continue
        conf = ps.flags != 0
        colour = _CHANNEL_COLOURS[j % len(_CHANNEL_COLOURS)]
        role = s.channel_roles.get(name, "channel")
        ax.scatter(ps.pos[conf, 0], ps.pos[conf, 1], s=8, color=colour, alpha=0.5,
                   linewidths=0, label=_printable(f"{name} tracks ({role})"))
    obj = s.objects
    if obj.pos.shape[0]:
        corr = (obj.flags & 1) != 0
        ax.scatter(obj.pos[corr, 0], obj.pos[corr, 1], s=9, color="black", linewidths=0,
                   label="output, corroborated", zorder=3)
        ax.scatter(obj.pos[~corr, 0], obj.pos[~corr, 1], s=14, facecolors="none",
                   edgecolors="black", linewidths=0.7, label="output, uncorroborated", zorder=3)
    for a, actor in enumerate(s.actor_ids):
        p = s.truth_pos[:, a, :] if s.truth_pos.ndim == 3 else np.zeros((0, 2))
        ok = np.isfinite(p).all(axis=1)
        if not ok.any():
            continue
        colour = _ACTOR_COLOURS[a % len(_ACTOR_COLOURS)]
        ax.plot(p[:, 0], p[:, 1], color=colour, linewidth=2.0, alpha=0.9,
                label=_printable(f"truth, actor {actor}"), zorder=2)
        first = int(np.flatnonzero(ok)[0])
        ax.scatter([p[first, 0]], [p[first, 1]], marker="o", s=30, color=colour, zorder=4)
    ax.scatter([0.0], [0.0], marker=">", s=90, color="#444444", zorder=5, label="ego")
    _zoom_to_data(ax, s.truth_pos.reshape(-1, 2), obj.pos)
    ax.set_xlabel("x forward (m, ego frame)")
    ax.set_ylabel("y left (m, ego frame)")
    ax.set_title(f"{_printable(result.name)}: tracks and output against truth in the ground "
                 "plane (dot = actor start)",
                 fontsize=11, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False,
              borderaxespad=0.0, markerscale=1.5)
    return fig


def _zoom_to_data(ax: Any, *points: FloatArray, min_span: tuple[float, float] = (12.0, 6.0),
                  ) -> None:
    """Limit the axes to where truth and output are (padded, with a minimum span), so objects
    that keep pace with the ego do not shrink to a dot inside the critical zone."""
    pts = np.concatenate([p.reshape(-1, 2) for p in points]) if points else np.zeros((0, 2))
    pts = pts[np.isfinite(pts).all(axis=1)]
    if pts.shape[0] == 0:
        return
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre, span = (lo + hi) / 2.0, (hi - lo) * 1.15
    span = np.maximum(span, np.asarray(min_span))
    ax.set_xlim(centre[0] - span[0] / 2, centre[0] + span[0] / 2)
    ax.set_ylim(centre[1] - span[1] / 2, centre[1] + span[1] / 2)


def save_plots(
    result: ScenarioResult, out_dir: str | Path, stem: str, settings: PlotSettings | None = None
) -> dict[str, str]:
    """Write ``<stem>-timeline.png`` and ``<stem>-ground.png`` into ``out_dir``; returns
    ``{"timeline": name, "ground": name}`` (file names, for relative links)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for key, make in (("timeline", timeline_figure), ("ground", ground_figure)):
        fig = make(result, settings)
        name = f"{stem}-{key}.png"
        fig.savefig(out / name, format="png")
        files[key] = name
    return files
