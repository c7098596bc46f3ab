"""save_figure: PNG always (the report embeds it), plus SVG or PDF when that figure format is chosen."""

import xml.etree.ElementTree as ET

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from transfer_neurons.errors import TransferNeuronsError  # noqa: E402
from transfer_neurons.outputs import figure_format, save_figure  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def a_figure():
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1, 0, 2], label="drop")
    ax.set_title("η² per layer")  # non-ASCII text survives every format
    return fig


def test_png_only_by_default(tmp_path):
    written = save_figure(tmp_path / "f.png", a_figure())
    assert written == tmp_path / "f.png" and written.read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]


def test_svg_is_written_beside_the_png_and_parses_as_svg(tmp_path):
    written = save_figure(tmp_path / "f.png", a_figure(), "svg")
    assert written == tmp_path / "f.svg"
    root = ET.fromstring(written.read_bytes())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert (tmp_path / "f.png").read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "f.svg"]  # no temp files left


def test_pdf_from_the_figure_format_block(tmp_path):
    with figure_format("pdf"):
        written = save_figure(tmp_path / "f.png", a_figure())
    data = written.read_bytes()
    assert written.suffix == ".pdf" and data.startswith(b"%PDF-") and b"%%EOF" in data[-32:]
    assert (tmp_path / "f.png").is_file()
    assert save_figure(tmp_path / "g.png", a_figure()).suffix == ".png"  # the block ended


@pytest.mark.parametrize("fmt", ["svg", "pdf"])
def test_vector_files_carry_no_date_so_reruns_give_the_same_bytes(tmp_path, fmt):
    first = save_figure(tmp_path / "a.png", a_figure(), fmt).read_bytes()
    assert save_figure(tmp_path / "b.png", a_figure(), fmt).read_bytes() == first


def test_unknown_format_is_a_clear_error(tmp_path):
    with pytest.raises(TransferNeuronsError, match="figure format must be one of png, svg, pdf"):
        save_figure(tmp_path / "f.png", a_figure(), "gif")
    assert not (tmp_path / "f.png").exists()
