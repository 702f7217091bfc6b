"""Checkpoints shipped with the package (installed as ``asyncthink.models``).

``models/tiny-organizer`` is the 2 M-parameter organizer trained on CPU by this
repository's own commands; ``shipped_model`` gives its folder wherever the
package is installed (a source checkout or site-packages).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def shipped_model(name: str = "tiny-organizer") -> Path:
    """The folder of a checkpoint that ships inside the package."""
    path = HERE / name
    if not (path / "config.json").is_file():
        known = sorted(p.name for p in HERE.iterdir() if (p / "config.json").is_file())
        raise FileNotFoundError(f"no shipped model {name!r} in {HERE}; shipped: {known}")
    return path
