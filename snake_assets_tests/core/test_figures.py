"""PNG figures decode, the venom confusion agrees with the official scorer, the hover page is self-contained."""

import base64
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from snake_assets.core.demo_images import draw_snake, encode_image, sample_individual
from snake_assets.core.figures import (
    ERRORS,
    confusion_png,
    png_markdown,
    projection_html,
    scatter_png,
    species_legend,
    thumbnail_data_uri,
    venom_outcomes,
)
from snake_assets.core.scoring import score_submission

VENOMOUS = {"Micrurus fulvius": True, "Lampropeltis triangulum": False}


def decode_png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_scatter_png_draws_every_species_in_its_own_colour():
    rng = np.random.default_rng(0)
    coords = np.concatenate([rng.normal(0, 0.2, (20, 2)), rng.normal(5, 0.2, (20, 2))])
    species = ["Micrurus fulvius"] * 20 + ["Lampropeltis triangulum"] * 20
    img = decode_png(scatter_png(coords, species, VENOMOUS, title="cls", order=["Micrurus fulvius"])).convert("RGB")
    assert img.width > 300 and img.height > 200
    colours = {c for _, c in img.getcolors(1 << 20)}
    # tab10 blue for the first species in ``order``, orange for the second
    assert any(abs(r - 31) < 25 and abs(g - 119) < 25 and b > 150 for r, g, b in colours)
    assert any(r > 230 and 110 < g < 150 and b < 40 for r, g, b in colours)
    with pytest.raises(ValueError, match="aligned"):
        scatter_png(coords[:5], species, VENOMOUS, title="x")


def test_legend_marks_venomous_species():
    assert species_legend(["Micrurus fulvius", "Lampropeltis triangulum"], VENOMOUS) == [
        "Micrurus fulvius (venomous)", "Lampropeltis triangulum",
    ]


def test_venom_outcomes_match_the_official_scorer():
    # harmless 1, 2; venomous 10, 11. Errors: o2 H->H, o3 H->V, o5 V->H, o6 V->V, o7 V->H.
    gt = pd.DataFrame({"observation_id": [f"o{i}" for i in range(1, 9)], "class_id": [1, 1, 2, 10, 10, 11, 11, 2]})
    sub = gt.assign(class_id=[1, 2, 10, 10, 1, 10, 2, 2])
    scores = score_submission(gt, sub, {10, 11})
    outcomes = venom_outcomes(n_harmless=4, n_venomous=4, **{c: scores[c] for c in ("n00", "n01", "n10", "n11")})
    assert outcomes.loc["harmless"].tolist() == [2, 1, 1]
    assert outcomes.loc["venomous"].tolist() == [1, 1, 2]
    weighted = sum(cost * outcomes.loc[truth, outcome] for (truth, outcome), (_, cost) in ERRORS.items())
    assert weighted == scores["track2"] == 1 + 2 + 2 + 2 * 5
    with pytest.raises(ValueError, match="exceed"):
        venom_outcomes(n_harmless=1, n_venomous=4, n00=1, n01=1, n10=0, n11=0)


def test_confusion_png_and_markdown_round_trip():
    outcomes = venom_outcomes(n_harmless=10, n_venomous=5, n00=2, n01=1, n10=1, n11=0)
    png = confusion_png(outcomes, title="val")
    assert decode_png(png).width > 300
    md = png_markdown(png, "confusion")
    match = re.fullmatch(r"!\[confusion\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
    assert match and base64.b64decode(match.group(1)) == png


def test_thumbnail_is_a_small_jpeg_or_empty_for_a_broken_file(tmp_path):
    rng = np.random.default_rng(0)
    photo = tmp_path / "snake.JPG"
    photo.write_bytes(encode_image(draw_snake("Micrurus fulvius", sample_individual("Micrurus fulvius", rng), rng), ".JPG"))
    uri = thumbnail_data_uri(photo, size=48)
    assert uri.startswith("data:image/jpeg;base64,")
    thumb = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert thumb.format == "JPEG" and max(thumb.size) == 48
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert thumbnail_data_uri(broken) == ""


class _ExternalRefs(HTMLParser):
    """Collects src/href attributes of tags: a self-contained page has none."""

    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        self.refs += [(tag, v) for k, v in attrs if k in ("src", "href") and v]


def test_projection_page_is_self_contained_with_one_thumbnail_per_point():
    points = pd.DataFrame({
        "binomial_name": ["Micrurus fulvius", "Lampropeltis triangulum", "Micrurus fulvius"],
        "observation_id": ["HM 1954", "1954", "77"],
        "split": ["train", "train", "val"],
        "thumbnail": ["data:image/jpeg;base64,AAAA", "", "data:image/jpeg;base64,BBBB"],
    })
    coords = {"cls": np.arange(6, dtype=float).reshape(3, 2), "dct8x8": np.ones((3, 2))}
    page = projection_html(coords, points, VENOMOUS, title="UMAP <demo>", subtitle="cls: kNN 1.0")
    parser = _ExternalRefs()
    parser.feed(page)
    assert parser.refs == []  # plotly.js is inlined, no tag loads anything
    assert "Plotly.newPlot" in page and 'plot.on("plotly_hover"' in page
    thumbs = json.loads(re.search(r"const THUMBS = (\[.*?\]);", page).group(1))
    assert thumbs == points["thumbnail"].tolist()
    assert "UMAP &lt;demo&gt;" in page
    assert "Micrurus fulvius (venomous)" in page and '"HM 1954"' in page
    assert page.count('"legendgroup":"Micrurus fulvius"') == 2  # one trace per recipe panel
