"""``--plot``: a real PNG of the promised size, with a panel per policy."""

from __future__ import annotations

import struct
from pathlib import Path

from typer.testing import CliRunner

from callcenter.cli import cli
from callcenter.simulation.plot import HEIGHT, WIDTH

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG has first."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_is_a_png_of_the_expected_size(tmp_path: Path) -> None:
    target = tmp_path / "whatif.png"
    result = CliRunner().invoke(
        cli,
        ["simulate", "--rate", "600", "--aht", "120", "--hours", "1", "--plot", str(target)],
    )
    assert result.exit_code == 0, result.output
    data = target.read_bytes()
    assert _png_size(data) == (WIDTH, HEIGHT)
    assert data.endswith(b"IEND\xaeB`\x82")  # the closing chunk: the file is whole
    # Bare axes of this size take about 31 kB; the curves and legends add far more.
    assert len(data) > 60_000
