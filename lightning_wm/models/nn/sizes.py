"""Named size presets of the single-camera world model (DreamerV3's sizes as data, not code).

`s` and `m` follow DreamerV3's paper (Hafner et al. 2023, Table B.1: sizes S and M); `xs` is
a CPU-friendly default and `tiny` exists for tests. Pick one by name with `get_size`.
"""

from dataclasses import dataclass

from sharding.errors import ConfigError


@dataclass(frozen=True)
class WorldModelSize:
    """Widths of every network in the world model.

    cnn_depth:  channels of the first encoder stage; stage i has cnn_depth * 2**i channels
    deter:      GRU deterministic state size D
    stoch:      number S of categorical latent variables
    classes:    classes K per categorical variable (the flat stochastic state is S * K)
    units:      hidden width of every MLP (RSSM input/output layers and the heads)
    mlp_layers: hidden layers of the ego-motion and hazard heads
    """

    cnn_depth: int
    deter: int
    stoch: int
    classes: int
    units: int
    mlp_layers: int

    @property
    def feature_dim(self) -> int:
        """Size F of the model feature (deter ++ flat stoch) the decoder and heads read."""
        return self.deter + self.stoch * self.classes


SIZES: dict[str, WorldModelSize] = {
    # For tests: a training step on 64x64 frames takes milliseconds.
    "tiny": WorldModelSize(cnn_depth=8, deter=32, stoch=4, classes=4, units=32, mlp_layers=1),
    # The CPU default: small, but every part is wide enough to learn the synthetic world.
    "xs": WorldModelSize(cnn_depth=16, deter=256, stoch=16, classes=16, units=256, mlp_layers=1),
    # DreamerV3 size S: about 15.5M world-model parameters at 64x64 (tests/lightning_wm/models/nn/test_sizes.py).
    "s": WorldModelSize(cnn_depth=32, deter=512, stoch=32, classes=32, units=512, mlp_layers=2),
    # DreamerV3 size M.
    "m": WorldModelSize(cnn_depth=48, deter=1024, stoch=32, classes=32, units=640, mlp_layers=3),
}


def get_size(name: str) -> WorldModelSize:
    """The preset called `name`; an unknown name raises ConfigError listing the choices."""
    if name not in SIZES:
        raise ConfigError(f"model.size={name!r} is not a known size; choose one of {sorted(SIZES)}")
    return SIZES[name]
