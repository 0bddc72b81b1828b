"""BEV rasters against hand-placed boxes and roads, and the datamodule's BEV targets from real shards."""

import numpy as np
import pytest

from datamodules.bev import BEV_CLASSES, BevGrid, rasterize
from datamodules.shard_datamodule import ShardDataModule
from sharding.contract import AGENT_FIELDS
from sharding.errors import ConfigError
from tests.helpers import make_dataset

GRID = BevGrid()
LINES = ["left_edge", "right_edge", "lane_0"]


def agent(x, y, length, width, yaw=0.0, cls=0, track=0):
    row = np.zeros(len(AGENT_FIELDS), np.float32)
    values = dict(track_id=track, class_id=cls, x=x, y=y, length=length, width=width, yaw=yaw, height=1.5)
    for name, value in values.items():
        row[AGENT_FIELDS.index(name)] = value
    return row


def straight_road(left=5.25, right=-1.75) -> np.ndarray:
    x = np.linspace(-20, 60, 41)
    road = np.full((1, 3, 41, 2), np.nan, np.float32)
    for k, y in ((0, left), (1, right), (2, 0.0)):
        road[0, k, :, 0], road[0, k, :, 1] = x, y
    return road


def test_grid_cells_and_shape():
    assert GRID.shape == (80, 80)
    centres = GRID.cell_centres()
    assert centres[0, 0].tolist() == [31.75, 19.75] and centres[-1, -1].tolist() == [-7.75, -19.75]
    with pytest.raises(ConfigError, match="model.bev.x_min=2.0"):
        BevGrid(x_min=2.0)


def test_a_car_covers_its_cells_and_a_pedestrian_at_least_one():
    agents = np.stack([agent(10.0, 0.0, 4.0, 2.0), agent(5.0, 3.0, 0.5, 0.5, yaw=0.7, cls=1, track=1),
                       np.zeros(len(AGENT_FIELDS), np.float32)])[None]  # the last row is padding
    raster, known = rasterize(GRID, agents, list(AGENT_FIELDS), straight_road(), LINES)
    assert raster.shape == (1, 3, 80, 80) and raster.dtype == np.uint8 and known.tolist() == [True, True, True]
    vehicle, pedestrian = raster[0, BEV_CLASSES.index("vehicle")], raster[0, BEV_CLASSES.index("pedestrian")]
    assert vehicle.sum() == 8 * 4  # 4 m x 2 m at 0.5 m cells
    rows, cols = np.nonzero(vehicle)
    assert set(GRID.cell_centres()[rows, cols, 0]) == {8.25 + 0.5 * i for i in range(8)}
    assert 1 <= pedestrian.sum() <= 6


def test_the_drivable_area_lies_between_the_edge_lines_even_on_a_bend():
    raster, _ = rasterize(GRID, np.zeros((1, 0, len(AGENT_FIELDS)), np.float32), list(AGENT_FIELDS),
                          straight_road(), LINES)
    drivable = raster[0, BEV_CLASSES.index("drivable")].astype(bool)
    y = GRID.cell_centres()[..., 1]
    assert (drivable == ((y <= 5.25) & (y >= -1.75))).all()
    bend = straight_road()
    bend[..., 1] += 0.01 * bend[..., 0] ** 2 * (bend[..., 0] > 0)  # curving left ahead
    raster, _ = rasterize(GRID, np.zeros((1, 0, len(AGENT_FIELDS)), np.float32), list(AGENT_FIELDS), bend, LINES)
    row = np.argmin(np.abs(GRID.cell_centres()[:, 0, 0] - 20.25))  # 20 m ahead the road has moved 4.1 m left
    ys = GRID.cell_centres()[row, raster[0, 2, row].astype(bool), 1]
    assert ys.min() == pytest.approx(-1.75 + 4.1, abs=0.5) and ys.max() == pytest.approx(5.25 + 4.1, abs=0.5)


def test_without_road_lines_the_drivable_channel_is_not_known():
    _, known = rasterize(GRID, np.zeros((2, 0, len(AGENT_FIELDS)), np.float32), list(AGENT_FIELDS), None, [])
    assert known.tolist() == [True, True, False]
    _, known = rasterize(GRID, np.zeros((2, 0, 3), np.float32), ["a", "b", "c"], None, [])
    assert known.tolist() == [False, False, False]  # agents without box fields: nothing known


def test_the_datamodule_yields_bev_targets_from_shards_with_road_lines(tmp_path):
    make_dataset(tmp_path, train_scenes=2, val_scenes=1, steps=16, chunk_steps=16, size=16, road_lines=LINES)
    data = ShardDataModule(dict(path=str(tmp_path), window=8, batch_size=2, num_workers=0), bev_grid=GRID)
    batch = next(iter(data.val_dataloader()))
    assert batch["bev"].shape == (2, 8, 3, 80, 80) and batch["bev_known"].shape == (2, 3)
    plain = ShardDataModule(dict(path=str(tmp_path), window=8, batch_size=2, num_workers=0))
    assert "bev" not in next(iter(plain.val_dataloader()))  # no grid: no targets (the IDM's data)
