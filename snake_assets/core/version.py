"""Code version stamped into checkpoints: package version plus the git commit when known."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from snake_assets import __version__


@functools.cache
def code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+g{sha}" if sha else __version__
