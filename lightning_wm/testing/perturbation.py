"""A suite's perturbations on the policy side: noisy and late actions, in either simulator.

`PerturbedPolicy(policy, perturbation, seed)` wraps any policy: the actions it returns get
Gaussian noise (std `action_noise` x each action's RMS over the episode's context) and reach the
car `action_delay` steps late, the motion into the last context step filling the gap. Noise is
drawn per episode from a generator seeded by the episode's name, so an episode's noise does not
depend on the batch it runs in. Latent noise is the learned simulator's (`LearnedSimulator(...,
latent_eps=)`): the reference world has no latent.
"""

from __future__ import annotations

import torch

from lightning_wm.policies.base import EpisodeInfo, Observation, Policy
from lightning_wm.simulation.learned import episode_seed
from lightning_wm.testing.suites import Perturbation


class PerturbedPolicy:
    """`policy` with `perturbation`'s action noise and delay; the latent part is ignored here."""

    def __init__(self, policy: Policy, perturbation: Perturbation, seed: int = 0) -> None:
        self.policy, self.perturbation, self.seed = policy, perturbation, seed
        self.wants_latent = bool(getattr(policy, "wants_latent", False))
        self.needs_frames = bool(getattr(policy, "needs_frames", True))

    def reset(self, info: EpisodeInfo) -> None:
        self.policy.reset(info)
        context = info.context_actions.float()  # [B, C, A]
        self.scale = context.square().mean(1).sqrt() * self.perturbation.action_noise  # [B, A]
        self.generators = [torch.Generator().manual_seed(episode_seed(self.seed, f"noise:{name}"))
                           for name in info.episode_ids]
        self.queue = [context[:, -2]] * self.perturbation.action_delay  # what reaches the car meanwhile

    def act(self, observation: Observation) -> torch.Tensor:
        actions = self.policy.act(observation)
        if not isinstance(actions, torch.Tensor):  # the simulator's check names the policy
            return actions
        if self.perturbation.action_noise > 0:
            noise = torch.stack([torch.randn(actions.shape[-1], generator=g) for g in self.generators])
            actions = actions + (noise * self.scale).to(actions)
        if self.perturbation.action_delay:
            self.queue.append(actions)
            actions = self.queue.pop(0).to(actions)
        return actions
