"""Every config composes, every experiment builds its typed config, and mistakes fail early."""

from pathlib import Path

import pytest

from lightning_wm.config import compose_config, to_object
from lightning_wm.models.registry import family_of
from lightning_wm.run_config import FitConfig
from sharding.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["data", "model", "trainer", "logger", "callbacks", "experiment"])
def test_every_option_of_every_group_composes(group):
    assert group_options(group), f"conf/{group}/ is empty"
    for option in group_options(group):
        overrides = [f"{group}={option}"]
        fit = to_object(compose_config("fit", overrides), "fit")
        assert isinstance(fit, FitConfig)
        family_of(fit.model)


def test_defaults_are_typed_and_overridable():
    fit = to_object(compose_config("fit", ["trainer.max_steps=7", "data.actions=[speed]"]), "fit")
    assert fit.trainer.max_steps == 7 and fit.data.actions == ["speed"]
    assert fit.data.path is None and fit.model.size == "xs"


def test_shard_config_composes_with_flags_as_overrides():
    shard = to_object(compose_config("shard", ["source=synthetic", "out=/tmp/x", "source.train_scenes=3"]), "shard")
    assert shard.out == "/tmp/x" and shard.source.train_scenes == 3 and shard.source.val_scenes == 16


@pytest.mark.parametrize("override, message", [
    ("trainer.max_stepz=3", "unknown config key 'trainer.max_stepz'"),
    ("data.batch_size=many", "data.batch_size='many' is not a valid"),
    ("model=nope", "no config 'model/nope'; choices for model: idm, multicam, policy, single_cam"),
    ("data.shuffle_buffer=0", "data.shuffle_buffer=0 must be >= 1"),
    ("model.size=huge", "model.size='huge' is not a known size"),
])
def test_mistakes_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        to_object(compose_config("fit", [override]), "fit")


@pytest.mark.parametrize("policy", group_options("policy"))
def test_every_policy_composes_into_the_simulate_config(policy):
    from lightning_wm.simulation.config import SimulateConfig

    simulate = to_object(compose_config("simulate", [f"policy={policy}"], free_nodes=("policy",)), "simulate")
    assert isinstance(simulate, SimulateConfig) and simulate.policy["_target_"].startswith("lightning_wm.policies.")
    assert simulate.episodes == 200 and simulate.horizon == 30 and simulate.scoring.l2_horizons_s == [1, 2, 3]


def test_sim_reference_runs_the_reference_simulator():
    from lightning_wm.simulation.config import SimulateConfig

    simulate = to_object(compose_config("simulate", ["sim=reference"]), "simulate")
    assert isinstance(simulate, SimulateConfig) and simulate.reference
