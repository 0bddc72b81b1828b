"""Expanding `lwm fit -m` overrides the way Hydra's BasicSweeper does."""

import pytest

from lightning_wm.tracking.sweep import expand, sweep_params
from sharding.errors import ConfigError


def test_sweep_values_expand_to_the_cartesian_product_in_order():
    combinations = expand(["model.size=xs,s", "data.batch_size=8,16", "model.psnr_horizons=[1,4]"])
    assert [c.overrides for c in combinations] == [
        ["model.size=xs", "data.batch_size=8", "model.psnr_horizons=[1,4]"],
        ["model.size=xs", "data.batch_size=16", "model.psnr_horizons=[1,4]"],
        ["model.size=s", "data.batch_size=8", "model.psnr_horizons=[1,4]"],
        ["model.size=s", "data.batch_size=16", "model.psnr_horizons=[1,4]"],
    ]
    assert combinations[1].swept == {"model.size": "xs", "data.batch_size": "16"}


def test_labels_name_the_swept_values_but_not_the_size_already_in_the_run_name():
    (one, two) = expand(["model.lr=0.001,3e-4", "experiment=quick", "trainer.max_steps=5"])
    assert (one.label(), two.label()) == ("lr0.001", "lr0.0003")  # the value as Hydra reads it
    assert [c.label() for c in expand(["model.size=xs,s", "data.batch_size=8"])] == ["", ""]
    assert [c.label() for c in expand(["experiment=quick,idm"])] == ["quick", "idm"]


def test_range_sweeps_and_plain_overrides():
    assert [c.overrides for c in expand(["seed=range(0,2)", "+logger.tags.k=v"])] == [
        ["seed=0", "+logger.tags.k=v"], ["seed=1", "+logger.tags.k=v"]]
    assert len(expand(["trainer.max_steps=3"])) == 1


def test_parent_params_are_the_overrides_as_given():
    assert sweep_params(["model.size=xs,s", "+logger.tags.k=v"]) == {"model.size": "xs,s", "logger.tags.k": "v"}


def test_unparsable_override_is_a_config_error():
    with pytest.raises(ConfigError, match="lwm fit -m"):
        expand(["model.size=[xs"])
