"""Procedural snake photographs for the generated demo release.

Each picture is a thick, curved snake body over a textured, natural-looking background.
The body carries a species-specific pattern (ring sequences, diamonds, hourglass bands,
carpet blotches, zig-zags) in species-specific colours, so a linear head on top of a
randomly initialised tiny DINOv2, whose features mostly carry colour and texture
statistics, can still tell most species apart. The coral snake and the milk snake share
their ring colours and differ in ring order and ring widths, as in the field.

Everything is drawn with numpy and Pillow from a ``numpy.random.Generator``: the same
generator state always yields the same pixels and the same encoded bytes.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

logger = logging.getLogger(__name__)

RGB = tuple[int, int, int]
PatternFn = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]

RED: RGB = (200, 35, 30)
YELLOW: RGB = (240, 205, 40)
BLACK: RGB = (22, 20, 20)

HABITATS: dict[str, tuple[RGB, RGB]] = {
    "grass": ((90, 110, 75), (125, 140, 100)),
    "soil": ((110, 95, 80), (140, 125, 105)),
    "rock": ((120, 120, 115), (155, 150, 145)),
    "sand": ((165, 155, 135), (195, 185, 160)),
    "leaf_litter": ((105, 85, 65), (140, 115, 85)),
    "water": ((75, 90, 95), (100, 115, 120)),
}
"""Background habitats: two colours each, mixed by low-frequency noise."""


def _bands(q: np.ndarray, bands: list[tuple[RGB, float]]) -> np.ndarray:
    """Colour each body position by a repeating sequence of (colour, width) ring bands."""
    widths = np.array([w for _, w in bands])
    edges = np.cumsum(widths)
    idx = np.searchsorted(edges, np.mod(q, edges[-1]), side="right")
    palette = np.array([c for c, _ in bands], dtype=np.float32)
    return palette[np.minimum(idx, len(bands) - 1)]


def _fill(shape: tuple[int, ...], colour: RGB) -> np.ndarray:
    """A writable ``shape + (3,)`` array of one colour."""
    return np.broadcast_to(np.array(colour, dtype=np.float32), (*shape, 3)).copy()


def _where(mask: np.ndarray, colour: RGB, base: np.ndarray) -> np.ndarray:
    """Paint ``colour`` into ``base`` where ``mask`` holds, in place, and return ``base``."""
    base[mask] = colour
    return base


def coral_rings(q: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Micrurus: red-yellow-black-yellow-red, broad red and black rings, narrow yellow."""
    return _bands(q, [(RED, 1.4), (YELLOW, 0.35), (BLACK, 1.4), (YELLOW, 0.35)])


def milk_rings(q: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lampropeltis: red-black-yellow-black-red, broad red saddles, narrow black and yellow."""
    return _bands(q, [(RED, 2.2), (BLACK, 0.35), (YELLOW, 0.45), (BLACK, 0.35)])


def carpet(q: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Morelia spilota: olive body with black-edged cream blotches."""
    a, b = rng.uniform(0, 2 * np.pi, 2)
    field = np.sin(2.1 * q + 2.5 * t + a) * np.sin(1.3 * q - 3.0 * t + b)
    base = _fill(q.shape, (120, 115, 45))
    base = _where(field > 0.2, BLACK, base)
    return _where(field > 0.38, (225, 205, 110), base)


def gaboon(q: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bitis gabonica: buff body, chain of purple-brown diamonds with pale centres."""
    phase = np.mod(q, 2.4) / 2.4
    d = np.abs(phase - 0.5) * 2 + np.abs(t)
    base = _fill(q.shape, (205, 175, 135))
    base = _where(np.abs(t) > 0.7, (95, 55, 85), base)
    base = _where(d < 0.85, (110, 60, 95), base)
    return _where(d < 0.4, (235, 220, 190), base)


def hourglass(q: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Agkistrodon contortrix: pinkish copper with chestnut hourglass cross-bands."""
    period = 2.6
    dist = np.abs(np.mod(q, period) - period / 2)
    base = _fill(q.shape, (220, 155, 115))
    return _where(dist < 0.25 + 0.55 * np.abs(t), (135, 60, 35), base)


def dark_uniform(q: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Agkistrodon piscivorus: dark olive-black with faint darker bands."""
    base = _fill(q.shape, (58, 55, 42))
    return _where(np.mod(q, 2.2) < 0.7, (36, 33, 27), base)


def collar(q: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Natrix natrix: green-grey body, small black side bars, yellow collar behind the head."""
    base = _fill(q.shape, (120, 135, 95))
    base = _where((np.mod(q, 1.2) < 0.35) & (np.abs(t) > 0.55), BLACK, base)
    base = _where((q > 0.6) & (q < 1.4), (245, 220, 50), base)
    return _where((q >= 1.4) & (q < 1.9), BLACK, base)


def zigzag(q: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vipera berus: pale grey body with a black dorsal zig-zag."""
    tri = np.abs(np.mod(q, 1.6) / 0.8 - 1.0) * 2 - 1
    base = _fill(q.shape, (185, 185, 175))
    return _where(np.abs(t - 0.4 * tri) < 0.25, BLACK, base)


def blotched(q: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Python regius: black-brown body with large rounded tan blotches."""
    a = rng.uniform(0, 2 * np.pi)
    field = np.cos(1.9 * q + a) + 0.8 * np.cos(3.0 * t) - 0.6
    base = _fill(q.shape, (40, 28, 18))
    return _where(field > 0.1, (190, 140, 75), base)


@dataclass(frozen=True)
class SpeciesLook:
    """How one demo species is drawn: its body pattern and the habitats it is found in."""

    pattern: PatternFn
    habitats: tuple[str, ...]


SPECIES_LOOKS: dict[str, SpeciesLook] = {
    "Micrurus fulvius": SpeciesLook(coral_rings, ("leaf_litter", "sand", "grass")),
    "Lampropeltis triangulum": SpeciesLook(milk_rings, ("grass", "rock", "leaf_litter")),
    "Morelia spilota": SpeciesLook(carpet, ("rock", "leaf_litter", "grass")),
    "Bitis gabonica": SpeciesLook(gaboon, ("leaf_litter", "soil")),
    "Agkistrodon contortrix": SpeciesLook(hourglass, ("leaf_litter", "rock", "soil")),
    "Agkistrodon piscivorus": SpeciesLook(dark_uniform, ("water", "grass", "soil")),
    "Natrix natrix": SpeciesLook(collar, ("grass", "water")),
    "Vipera berus": SpeciesLook(zigzag, ("grass", "rock", "soil")),
    "Python regius": SpeciesLook(blotched, ("sand", "soil", "leaf_litter")),
}
"""Drawing recipe per demo species (keys are binomial names)."""


@dataclass(frozen=True)
class Individual:
    """What the photographs of one observation share: the animal and where it was found."""

    habitat: str
    colour_gain: tuple[float, float, float]
    pattern_seed: int


def sample_individual(binomial_name: str, rng: np.random.Generator) -> Individual:
    """Draw the animal and habitat shared by all images of one observation.

    Args:
        binomial_name: A key of ``SPECIES_LOOKS``.
        rng: Source of randomness.

    Returns:
        The individual's habitat, colour variation and pattern seed.
    """
    habitats = SPECIES_LOOKS[binomial_name].habitats
    habitat = habitats[int(rng.integers(len(habitats)))]
    gain = tuple(float(g) for g in rng.uniform(0.93, 1.07, 3))
    return Individual(habitat=habitat, colour_gain=gain, pattern_seed=int(rng.integers(2**31)))


def _background(h: int, w: int, habitat: str, rng: np.random.Generator) -> np.ndarray:
    """Two habitat colours mixed by blurred noise, plus coarse and fine grain."""
    c0, c1 = (np.array(c, dtype=np.float32) for c in HABITATS[habitat])
    shift = rng.normal(0, 6, 3).astype(np.float32)
    coarse = rng.random((int(rng.integers(3, 7)), int(rng.integers(3, 7)))).astype(np.float32)
    mix = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR))
    img = c0 + (c1 - c0) * mix[..., None] + shift
    grain = rng.standard_normal((h // 4 + 1, w // 4 + 1), dtype=np.float32)
    grain = np.kron(grain, np.ones((4, 4), dtype=np.float32))[:h, :w]
    img += 10 * grain[..., None] + 6 * rng.standard_normal((h, w, 1), dtype=np.float32)
    return img


@dataclass(frozen=True)
class _Pose:
    """Where and how the body lies in the picture (pixels and radians)."""

    theta: float
    cx: float
    cy: float
    radius: float
    amp: float
    freq: float
    phase: float
    half_len: float
    head_sign: float


def _sample_pose(h: int, w: int, rng: np.random.Generator) -> _Pose:
    """A random body pose for an ``h`` x ``w`` picture."""
    side, long_side = min(h, w), max(h, w)
    return _Pose(
        theta=float(rng.uniform(-0.6, 0.6) + (np.pi / 2 if h > 1.3 * w else 0.0)),
        cx=float(w * rng.uniform(0.4, 0.6)),
        cy=float(h * rng.uniform(0.4, 0.6)),
        radius=float(side * rng.uniform(0.11, 0.16)),
        amp=float(side * rng.uniform(0.06, 0.16)),
        freq=float(2 * np.pi * rng.uniform(0.6, 1.4) / long_side),
        phase=float(rng.uniform(0, 2 * np.pi)),
        half_len=float(0.5 * long_side * rng.uniform(0.85, 1.1)),
        head_sign=1.0 if rng.random() < 0.5 else -1.0,
    )


def _body_band(
    xx: np.ndarray, yy: np.ndarray, pose: _Pose, offset: float, *, head: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass of the body over pixel grids ``xx``/``yy``.

    Returns:
        The body mask and, for the masked pixels only, the along-body coordinate ``q``
        (body widths from the head) and the across-body coordinate ``t`` (-1..1).
    """
    cos, sin = float(np.cos(pose.theta)), float(np.sin(pose.theta))
    u = (xx - pose.cx) * cos + (yy - pose.cy) * sin
    v = (yy - pose.cy) * cos - (xx - pose.cx) * sin - offset
    wave = pose.freq * u + pose.phase
    slope = pose.amp * pose.freq * np.cos(wave)
    stretch = np.sqrt(1 + slope**2)
    offset_v = v - pose.amp * np.sin(wave)
    t = offset_v / stretch / pose.radius
    along = np.clip((pose.head_sign * u + pose.half_len) / (2 * pose.half_len), 0, 1)
    width = np.where(along < 0.3, 0.35 + 0.65 * along / 0.3, 1.0) if head else np.ones_like(t)  # tapering tail
    mask = (np.abs(t) < width) & (np.abs(u) <= pose.half_len)
    if head:
        head_u = pose.head_sign * pose.half_len
        head_v = pose.amp * float(np.sin(pose.freq * head_u + pose.phase))
        disc = (u - head_u) ** 2 + (v - head_v) ** 2 < (1.15 * pose.radius) ** 2
        mask |= disc & (pose.head_sign * u >= pose.half_len)
    # Arc length from the head, in body widths, measured at the nearest point of the centre
    # line so that rings stay square to the body.
    u_foot = u[mask] - offset_v[mask] * slope[mask] / stretch[mask] ** 2
    grid = np.linspace(-2 * pose.half_len, 2 * pose.half_len, 512)
    ds = np.sqrt(1 + (pose.amp * pose.freq * np.cos(pose.freq * pose.head_sign * grid + pose.phase)) ** 2)
    arc = np.concatenate([[0.0], np.cumsum(0.5 * (ds[1:] + ds[:-1]) * np.diff(grid))])
    q = (np.interp(pose.half_len, grid, arc) - np.interp(pose.head_sign * u_foot, grid, arc)) / (2 * pose.radius)
    t_body = np.clip(t[mask] / np.maximum(width[mask], 1e-3), -1, 1)
    return mask, q.astype(np.float32), t_body.astype(np.float32)


def draw_snake(binomial_name: str, individual: Individual, rng: np.random.Generator) -> Image.Image:
    """Draw one photograph of ``individual``, a snake of species ``binomial_name``.

    The body lies in one to three parallel passes (a loosely coiled snake); only the
    front pass ends in a head.

    Args:
        binomial_name: A key of ``SPECIES_LOOKS``.
        individual: Shared traits of the observation (habitat, colour variation, pattern).
        rng: Source of randomness for this image (size, pose, background, noise).

    Returns:
        An RGB image between 160 and 320 pixels per side.
    """
    w, h = (int(s) for s in rng.integers(160, 321, 2))
    img = _background(h, w, individual.habitat, rng)
    pose = _sample_pose(h, w, rng)
    passes = int(rng.choice((1, 2, 3), p=(0.1, 0.4, 0.5)))
    spacing = pose.radius * float(rng.uniform(2.1, 2.6))
    pattern_rng = np.random.default_rng(individual.pattern_seed)
    gain = np.array(individual.colour_gain, dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for k in range(passes):  # back to front
        mask, q, t = _body_band(xx, yy, pose, (k - (passes - 1) / 2) * spacing, head=k == passes - 1)
        body = SPECIES_LOOKS[binomial_name].pattern(q + 3.7 * k, t, pattern_rng) * gain
        body *= (1.0 - 0.35 * t**2)[:, None]  # round body: darker flanks
        body *= (1.0 + 0.06 * np.sin(9.0 * q) * np.sin(7.0 * t))[:, None]  # scales
        img[mask] = body + 5 * rng.standard_normal(body.shape, dtype=np.float32)
    img = img * np.float32(rng.uniform(0.88, 1.1)) + np.float32(rng.uniform(-10, 10))  # exposure
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    return pil.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.0))))


def encode_image(image: Image.Image, extension: str) -> bytes:
    """Encode ``image`` in the format its file extension promises (JPEG or PNG).

    Args:
        image: RGB image.
        extension: ``.jpg``, ``.jpeg``, ``.JPG``, ``.png`` or ``.PNG``.

    Returns:
        The encoded file content.
    """
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(extension.lower())
    if fmt is None:
        raise ValueError(f"unsupported demo image extension {extension!r}")
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()
