"""LLaVA-NeXT "any-res": how an image is cut into tiles, and a picture of it.

LLaVA-NeXT picks the grid resolution (from ``image_grid_pinpoints``) that keeps the most of the
image's detail, resizes the image into it (keeping the aspect ratio, padding the rest), cuts it
into ``tile x tile`` crops, and adds one low-resolution view of the whole image. Every crop goes
through the vision tower; the features become image tokens (plus one newline token per row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class TileLayout:
    image_size: tuple[int, int]  # (height, width) of the original image
    grid: tuple[int, int]  # (height, width) of the chosen pinpoint resolution
    tile: int  # the vision tower's input size
    rows: int
    cols: int
    resized: tuple[int, int]  # (height, width) of the image inside the grid, before padding

    @property
    def views(self) -> int:
        """Crops through the vision tower: the tiles plus one overview."""
        return self.rows * self.cols + 1


def tile_layout(image_size: tuple[int, int], pinpoints: Sequence[Sequence[int]], tile: int) -> TileLayout:
    """The any-res layout for an image of ``image_size`` = (height, width), as transformers chooses it."""
    from transformers.image_processing_utils import select_best_resolution

    height, width = image_size
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive (height, width), got {image_size}")
    grid_h, grid_w = select_best_resolution((height, width), [list(p) for p in pinpoints])
    scale = min(grid_w / width, grid_h / height)
    resized = (min(grid_h, round(height * scale)), min(grid_w, round(width * scale)))
    return TileLayout((height, width), (grid_h, grid_w), tile, grid_h // tile, grid_w // tile, resized)


def show_anyres_tiles(image: Image.Image, pinpoints: Sequence[Sequence[int]], tile: int, title: str | None = None):
    """Draw the overview and the grid of tiles an image becomes; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from vlm_course.display import set_title

    layout = tile_layout((image.height, image.width), pinpoints, tile)
    grid_h, grid_w = layout.grid
    canvas = Image.new("RGB", (grid_w, grid_h), (0, 0, 0))
    res_h, res_w = layout.resized
    canvas.paste(image.convert("RGB").resize((res_w, res_h)), ((grid_w - res_w) // 2, (grid_h - res_h) // 2))

    fig, (ax_base, ax_grid) = plt.subplots(1, 2, figsize=(9, 4.2), width_ratios=[1, 2], layout="constrained")
    ax_base.imshow(image.convert("RGB").resize((tile, tile)))
    set_title(ax_base, f"개요: {tile}x{tile}")
    ax_grid.imshow(canvas)
    for r in range(layout.rows):
        for c in range(layout.cols):
            ax_grid.add_patch(Rectangle((c * tile, r * tile), tile, tile, fill=False, edgecolor="red", linewidth=2))
            ax_grid.text(c * tile + 8, r * tile + tile * 0.12, f"#{r * layout.cols + c + 1}", color="red", fontsize=10)
    set_title(ax_grid, f"{image.width}x{image.height} -> 격자 {grid_w}x{grid_h}: 타일 {layout.rows}x{layout.cols}")
    for ax in (ax_base, ax_grid):
        ax.set_xticks([])
        ax.set_yticks([])
    set_title(fig, title or f"비전 인코더 입력 {layout.views}개 (타일 {layout.rows * layout.cols}장 + 개요 1장)")
    return fig
