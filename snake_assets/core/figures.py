"""Pictures for the Dagster UI: PNG bytes (matplotlib) and a self-contained interactive page (plotly).

Everything here returns bytes or text; writing files and attaching metadata is the
caller's job. PNGs are drawn on a bare ``Figure`` with the Agg canvas (no pyplot
global state, no display needed). The interactive page embeds plotly.js and each
point's thumbnail as a JPEG data URI, so it opens offline from a single file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

VENOMOUS_MARKER, HARMLESS_MARKER = "^", "o"
OUTCOMES = ("correct species", "wrong species, same status", "wrong venom status")
"""Columns of the venomous/harmless confusion; rows are the true status (harmless, venomous)."""
ERRORS = {("harmless", OUTCOMES[1]): ("N00", 1), ("harmless", OUTCOMES[2]): ("N01", 2),
          ("venomous", OUTCOMES[1]): ("N11", 2), ("venomous", OUTCOMES[2]): ("N10", 5)}
"""The official scorer's name and Track 2 cost of each error type."""


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
    return buf.getvalue()


def species_legend(species: Sequence[str], venomous: dict[str, bool]) -> list[str]:
    """Legend labels: the species name, with "(venomous)" for venomous species."""
    return [f"{s} (venomous)" if venomous.get(s) else s for s in species]


def _species_order(labels: Sequence[str], order: Sequence[str] | None) -> list[str]:
    """Species present in ``labels``: those in ``order`` first (in that order), then the rest by name."""
    present = set(labels)
    first = [s for s in dict.fromkeys(order or ()) if s in present]
    return first + sorted(present - set(first))


def scatter_png(
    coords: np.ndarray,
    species: Sequence[str],
    venomous: dict[str, bool],
    *,
    title: str,
    order: Sequence[str] | None = None,
    dpi: int = 80,
) -> bytes:
    """A 2D scatter coloured by species, venomous species drawn as triangles, with a legend.

    Args:
        coords: (n, 2) projected points.
        species: species of each point.
        venomous: species name -> venomous flag.
        title: figure title (recipe, backbone, sample size).
        order: species order of colours and legend (default: by name).
    """
    from matplotlib.figure import Figure

    coords = np.asarray(coords, dtype=float)
    labels = np.asarray(list(species), dtype=object)
    if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) != len(labels):
        raise ValueError(f"coords must be (n, 2) aligned with species; got {coords.shape} for {len(labels)} labels")
    names = _species_order(labels.tolist(), order)
    fig = Figure(figsize=(7.0, 4.6), dpi=dpi)
    ax = fig.add_subplot()
    for colour, name, legend in zip(_palette(len(names)), names, species_legend(names, venomous)):
        pts = coords[labels == name]
        marker = VENOMOUS_MARKER if venomous.get(name) else HARMLESS_MARKER
        ax.scatter(pts[:, 0], pts[:, 1], s=18, color=colour, marker=marker, label=f"{legend} [{len(pts)}]",
                   edgecolors="black" if venomous.get(name) else "none", linewidths=0.3, alpha=0.85)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("UMAP 1", fontsize=8)
    ax.set_ylabel("UMAP 2", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, title="▲ venomous  ● harmless",
              title_fontsize=7)
    return _png(fig)


def venom_outcomes(*, n_harmless: int, n_venomous: int, n00: int, n01: int, n10: int, n11: int) -> pd.DataFrame:
    """Observations by true venom status x outcome, from the official scorer's error counts.

    ``n00``/``n01`` are wrong predictions on harmless observations (predicted harmless /
    venomous), ``n10``/``n11`` on venomous ones, as in :func:`snake_assets.core.scoring.score_submission`.

    Raises:
        ValueError: more errors than observations in a row.
    """
    frame = pd.DataFrame(
        [[n_harmless - n00 - n01, n00, n01], [n_venomous - n11 - n10, n11, n10]],
        index=pd.Index(["harmless", "venomous"], name="truth"), columns=list(OUTCOMES),
    ).astype(int)
    if (frame < 0).any().any():
        raise ValueError(f"error counts exceed the observations: {frame.to_dict()}")
    return frame


def confusion_png(outcomes: pd.DataFrame, *, title: str, dpi: int = 80) -> bytes:
    """Heatmap of :func:`venom_outcomes`: counts, share of the row, and each error type's Track 2 cost.

    Correct predictions are shaded green, errors red, both by their share of the row.
    """
    from matplotlib.figure import Figure

    values = outcomes.to_numpy(dtype=float)
    share = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(6.4, 2.9), dpi=dpi)
    ax = fig.add_subplot()
    correct = np.zeros_like(share, dtype=bool)
    correct[:, 0] = True
    ax.imshow(np.ma.masked_where(~correct, share), cmap="Greens", vmin=0, vmax=1, aspect="auto")
    ax.imshow(np.ma.masked_where(correct, share), cmap="Reds", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(outcomes.columns)), [c.replace(", ", ",\n") for c in outcomes.columns], fontsize=8)
    ax.set_yticks(range(len(outcomes.index)), [f"true {i}" for i in outcomes.index], fontsize=8)
    track2 = 0
    for r, truth in enumerate(outcomes.index):
        for c, outcome in enumerate(outcomes.columns):
            name, cost = ERRORS.get((truth, outcome), ("", 0))
            track2 += cost * int(values[r, c])
            note = f"{int(values[r, c])}  ({share[r, c]:.0%})" + (f"\n{name}, cost x{cost}" if cost else "")
            ax.text(c, r, note, ha="center", va="center", fontsize=9, color="white" if share[r, c] > 0.6 else "black")
    ax.set_title(f"{title}\nTrack 2 (weighted errors) = {track2}", fontsize=9)
    return _png(fig)


def png_markdown(png: bytes, alt: str) -> str:
    """Markdown showing ``png`` inline as a base64 data URI (the Dagster UI renders it)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def thumbnail_data_uri(path: str | Path, size: int = 72, quality: int = 70) -> str:
    """A small JPEG of the image as a ``data:`` URI, or ``""`` when the file cannot be decoded."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img.draft("RGB", (size * 2, size * 2))  # JPEG: decode at reduced scale, much faster on large photos
            img = ImageOps.exif_transpose(img).convert("RGB")
            img.thumbnail((size, size))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=quality)
    except (OSError, ValueError) as exc:
        logger.warning("no thumbnail for %s: %s", path, exc)
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:8px}} #hover-card{{position:fixed;top:12px;right:12px;width:180px;
padding:8px;background:#fff;border:1px solid #999;border-radius:6px;font-size:12px;z-index:10;display:none}}
#hover-card img{{max-width:160px;max-height:160px;display:block;margin-bottom:4px}}</style></head>
<body><h3>{title}</h3><p>{subtitle}</p>
<div id="hover-card"><img id="hover-thumb" alt="thumbnail"><div id="hover-text"></div></div>
{plot}
<script>
const THUMBS = {thumbs};
const card = document.getElementById("hover-card");
const thumb = document.getElementById("hover-thumb");
const text = document.getElementById("hover-text");
const plot = document.getElementById("{div_id}");
plot.on("plotly_hover", function (ev) {{
  const d = ev.points[0].customdata;
  thumb.src = THUMBS[d[0]] || "";
  text.textContent = d[1] + " \\u2014 observation " + d[2] + " (" + d[3] + ")";
  card.style.display = "block";
}});
</script></body></html>
"""


def projection_html(
    coords: dict[str, np.ndarray],
    points: pd.DataFrame,
    venomous: dict[str, bool],
    *,
    title: str,
    subtitle: str = "",
    order: Sequence[str] | None = None,
) -> str:
    """One self-contained page: a UMAP panel per recipe; hovering a point shows its thumbnail.

    Args:
        coords: recipe -> (n, 2) coordinates, rows aligned with ``points``.
        points: ``binomial_name, observation_id, split, thumbnail`` (a data URI or ``""``) per point.
        venomous: species name -> venomous flag.
        title: page heading.
        subtitle: a line under the heading (sample, seed, separability).
        order: species order of colours and legend (default: by name).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    recipes = list(coords)
    cols = min(3, len(recipes))
    rows = -(-len(recipes) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=recipes, horizontal_spacing=0.04, vertical_spacing=0.08)
    names = _species_order(points["binomial_name"].tolist(), order)
    colours = [f"rgba({int(r * 255)},{int(g * 255)},{int(b * 255)},0.85)" for r, g, b, _ in _palette(len(names))]
    index = np.arange(len(points))
    for i, recipe in enumerate(recipes):
        xy = np.asarray(coords[recipe], dtype=float)
        for colour, name, legend in zip(colours, names, species_legend(names, venomous)):
            mask = (points["binomial_name"] == name).to_numpy()
            sel = points[mask]
            fig.add_trace(
                go.Scatter(
                    x=xy[mask, 0], y=xy[mask, 1], mode="markers", name=legend, legendgroup=name, showlegend=i == 0,
                    marker={"color": colour, "size": 7, "symbol": "triangle-up" if venomous.get(name) else "circle"},
                    customdata=np.column_stack([index[mask], sel["binomial_name"], sel["observation_id"], sel["split"]]),
                    hovertemplate="%{customdata[1]}<br>observation %{customdata[2]} (%{customdata[3]})<extra>" + recipe + "</extra>",
                ),
                row=i // cols + 1, col=i % cols + 1,
            )
    fig.update_layout(height=80 + 440 * rows, width=max(560, 460 * cols), margin={"t": 40, "l": 20, "r": 20, "b": 20},
                      legend={"orientation": "h", "y": -0.04})
    div_id = "projection"
    plot = fig.to_html(full_html=False, include_plotlyjs=True, div_id=div_id)
    return _PAGE.format(
        title=html.escape(title), subtitle=html.escape(subtitle), plot=plot, div_id=div_id,
        thumbs=json.dumps(points["thumbnail"].tolist()).replace("</", "<\\/"),
    )
