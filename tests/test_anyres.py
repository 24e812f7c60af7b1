import matplotlib

matplotlib.use("Agg")

import pytest
from PIL import Image

from vlm_course.anyres import show_anyres_tiles, tile_layout

REAL_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]  # llava-v1.6


def test_layout_matches_transformers_choice_for_a_640x480_photo():
    layout = tile_layout((480, 640), REAL_PINPOINTS, 336)
    assert layout.grid == (672, 672) and (layout.rows, layout.cols) == (2, 2) and layout.views == 5
    assert layout.resized == (504, 672)  # aspect ratio kept, then padded


def test_tall_and_wide_images_get_tall_and_wide_grids():
    assert tile_layout((1000, 300), REAL_PINPOINTS, 336).grid == (1008, 336)
    assert tile_layout((300, 1000), REAL_PINPOINTS, 336).grid == (336, 1008)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="must be positive"):
        tile_layout((0, 10), REAL_PINPOINTS, 336)


def test_figure_draws_one_rectangle_per_tile():
    fig = show_anyres_tiles(Image.new("RGB", (640, 480), "white"), REAL_PINPOINTS, 336)
    assert len(fig.axes[1].patches) == 4
    assert "타일 2x2" in fig.axes[1].get_title()
    assert fig.get_suptitle() == "비전 인코더 입력 5개 (타일 4장 + 개요 1장)"
