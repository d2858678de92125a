"""The stage-II tile plan covers the lung box exactly once with valid tile sizes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from algorithm.inference import TilingSettings, plan_tiles
from algorithm.network.cunet import valid_input_size


def _coverage(box, plan) -> np.ndarray:
    shape = [s.stop + 200 for s in box]
    count = np.zeros(shape, np.int32)
    for start in plan.starts_zyx:
        count[tuple(slice(a, a + t) for a, t in zip(start, plan.size_out_zyx))] += 1
    return count[tuple(box)]


@pytest.mark.parametrize("extents", [(70, 75, 80), (20, 150, 33), (5, 5, 5), (200, 180, 220)])
def test_planned_tiles_cover_the_box_once_within_budget(extents):
    box = tuple(slice(3, 3 + e) for e in extents)
    settings = TilingSettings(max_tile_in_voxels=144**3)
    plan = plan_tiles(box, settings)
    assert (_coverage(box, plan) == 1).all()
    for size in plan.size_out_zyx:
        valid_input_size(size)  # raises unless 8k - 28
    assert np.prod(plan.size_in_zyx) <= settings.max_tile_in_voxels


def test_planned_tiles_waste_less_than_the_paper_tiles():
    box = tuple(slice(0, e) for e in (70, 75, 80))
    planned = plan_tiles(box, TilingSettings())
    paper = plan_tiles(box, TilingSettings(tile_out=28))
    work = lambda p: len(p.starts_zyx) * np.prod(p.size_in_zyx)  # noqa: E731
    assert work(planned) < work(paper) / 3
    assert paper.size_in_zyx == (116, 116, 116)
    assert len(paper.starts_zyx) == 3 * 3 * 3


def test_fixed_tile_must_be_valid():
    with pytest.raises(ValueError):
        plan_tiles((slice(0, 10),) * 3, TilingSettings(tile_out=30))
