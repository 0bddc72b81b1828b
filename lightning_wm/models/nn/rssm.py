"""Recurrent state-space model (RSSM) of DreamerV3: the latent dynamics of the world model.

The state at step t is a deterministic GRU state `deter` plus `stoch` categorical variables
of `classes` classes each. The prior predicts the categoricals from `deter` alone (used to
imagine); the posterior also sees the image embedding of step t (used to observe).
Conventions follow the batch contract: `actions[:, t]` is the motion from step t to t+1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lightning_wm.models.nn.layers import dense, symlog

Generator = torch.Generator | list[torch.Generator] | None  # a list: one per row of the batch


def draw(kind: str, shape: tuple[int, ...], generator: Generator, device: torch.device, **kwargs) -> torch.Tensor:
    """torch.rand / randn / randint (`kind`) of `shape` on `device`. A list of generators draws each
    row of the leading (batch) axis from its own generator, so a row's numbers do not depend on the
    rows batched with it (a closed-loop episode replays the same alone or in any batch)."""
    make = {"rand": torch.rand, "randn": torch.randn, "randint": torch.randint}[kind]
    if not isinstance(generator, list):
        at = generator.device if generator is not None else device
        return make(*kwargs.pop("args", ()), shape, generator=generator, device=at, **kwargs).to(device)
    assert len(generator) == shape[0], f"{len(generator)} generators for a batch of {shape[0]}"
    rows = [make(*kwargs.get("args", ()), shape[1:], generator=g, device=g.device) for g in generator]
    return torch.stack(rows).to(device)


@dataclass
class RSSMState:
    """Latent state, any number of leading dims `...` ([B] for one step, [B, T] for a sequence).

    deter:  [..., D] GRU state, in [-1, 1]
    stoch:  [..., S, K] one-hot sample per categorical; carries straight-through gradients
    logits: [..., S, K] log-probabilities (after the 1% unimix) the sample was drawn from
    """

    deter: torch.Tensor
    stoch: torch.Tensor
    logits: torch.Tensor

    def feature(self) -> torch.Tensor:
        """deter ++ flat stoch: [..., D + S * K], what the decoder and heads read."""
        return torch.cat([self.deter, self.stoch.flatten(-2)], -1)

    def __getitem__(self, index) -> RSSMState:
        """Index the leading dims of every field, e.g. `states[:, -1]` for the last step."""
        return RSSMState(self.deter[index], self.stoch[index], self.logits[index])

    @staticmethod
    def stack(states: list[RSSMState], dim: int = 1) -> RSSMState:
        """T states with leading [B] -> one with leading [B, T] (dim=1)."""
        return RSSMState(*(torch.stack([getattr(s, f) for s in states], dim) for f in ("deter", "stoch", "logits")))


class NormGRUCell(nn.Module):
    """GRU cell with LayerNorm on the gates, as in DreamerV3: ([N, I], [N, D]) -> [N, D]."""

    def __init__(self, input_dim: int, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(input_dim + hidden, 3 * hidden, bias=False)
        self.norm = nn.LayerNorm(3 * hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        reset, cand, update = self.norm(self.linear(torch.cat([x, h], -1))).chunk(3, -1)
        reset = torch.sigmoid(reset)
        cand = torch.tanh(reset * cand)
        update = torch.sigmoid(update - 1)  # -1: starts biased towards keeping the old state
        return update * cand + (1 - update) * h


class RSSM(nn.Module):
    """Prior, posterior and transition of the latent state.

    embed_dim E (image embedding), action_dim A, deter D, stoch S, classes K, units U.
    """

    def __init__(self, embed_dim: int, action_dim: int, deter: int, stoch: int, classes: int, units: int,
                 unimix: float = 0.01) -> None:
        super().__init__()
        self.stoch, self.classes, self.unimix = stoch, classes, unimix
        # Transition h_t = GRU(h_{t-1}, [z_{t-1}, a_{t-1}]).
        self.img_in = dense(stoch * classes + action_dim, units)
        self.gru = NormGRUCell(units, deter)
        # Prior p(z_t | h_t).
        self.prior_head = nn.Sequential(dense(deter, units), nn.Linear(units, stoch * classes))
        # Posterior q(z_t | h_t, e_t). DreamerV3 applies one Linear to [h_t, e_t]; we split it
        # into two (the same function) so the embedding part runs once over all steps.
        self.post_deter = nn.Linear(deter, units, bias=False)
        self.post_embed = nn.Linear(embed_dim, units, bias=False)
        self.post_out = nn.Sequential(nn.LayerNorm(units), nn.SiLU(), nn.Linear(units, stoch * classes))
        # Learned initial state (DreamerV3 `initial: learned`); tanh keeps it in the GRU's range.
        self.initial_deter = nn.Parameter(torch.zeros(deter))

    # ---- distributions ------------------------------------------------------------
    def _log_probs(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw logits [..., S*K] -> log-probabilities [..., S, K] with `unimix` uniform mixed in.

        The 1% uniform mix keeps every class possible, so KL terms stay finite (DreamerV3).
        In float32: the categorical math is unstable in bfloat16.
        """
        probs = raw.float().unflatten(-1, (self.stoch, self.classes)).softmax(-1)
        return torch.log((1 - self.unimix) * probs + self.unimix / self.classes)

    @staticmethod
    def sample(logits: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        """One-hot sample [..., S, K] of log-probs [..., S, K] with straight-through gradients.

        Gumbel-max draws the sample (seedable through `generator`); adding `probs - sg(probs)`
        gives it the gradient of the probabilities, so losses downstream reach the encoder.
        """
        u = draw("rand", logits.shape, generator, logits.device)
        u = u.clamp(1e-7, 1 - 1e-7)  # keeps both logs finite in float32
        gumbel = -torch.log(-torch.log(u))
        one_hot = F.one_hot((logits.detach() + gumbel).argmax(-1), logits.shape[-1]).to(logits.dtype)
        probs = logits.exp()
        return one_hot + probs - probs.detach()

    # ---- single steps ---------------------------------------------------------------
    def initial(self, batch_size: int) -> RSSMState:
        """The learned start state, leading dims [B]; its stoch is the prior's mode."""
        deter = torch.tanh(self.initial_deter).expand(batch_size, -1)
        logits = self._log_probs(self.prior_head(deter))
        stoch = F.one_hot(logits.argmax(-1), self.classes).to(logits.dtype)
        return RSSMState(deter, stoch, logits)

    def transition(self, state: RSSMState, action: torch.Tensor) -> torch.Tensor:
        """Next deter [B, D] from a state (leading [B]) and the action [B, A] taken in it.

        Actions go in symlog-squashed (speeds of 10s of m/s next to one-hot latents).
        """
        x = self.img_in(torch.cat([state.stoch.flatten(-2), symlog(action)], -1))
        return self.gru(x, state.deter)

    def img_step(self, state: RSSMState, action: torch.Tensor,
                 generator: Generator = None) -> RSSMState:
        """Prior state of the next step: (state [B], action [B, A]) -> state [B]."""
        deter = self.transition(state, action)
        logits = self._log_probs(self.prior_head(deter))
        return RSSMState(deter, self.sample(logits, generator), logits)

    # ---- sequences ------------------------------------------------------------------
    def observe(self, embeds: torch.Tensor, prev_actions: torch.Tensor, initial: RSSMState | None = None,
                generator: Generator = None) -> tuple[RSSMState, RSSMState]:
        """Filter a sequence: embeds [B, T, E], prev_actions [B, T, A] -> (posts, priors), each [B, T].

        `prev_actions[:, t]` is the action that led from step t-1 into step t; at t=0 it leads
        out of `initial` (default: the learned initial state, with a zero action as DreamerV3
        does at an episode start). `priors` hold the prior of each step given the posterior
        of the step before, for the KL terms.
        """
        batch, steps = embeds.shape[:2]
        state = initial if initial is not None else self.initial(batch)
        embed_part = self.post_embed(embeds)  # [B, T, U], all steps in one matmul
        posts = []
        for t in range(steps):  # the only time loop: z_t feeds h_{t+1}
            deter = self.transition(state, prev_actions[:, t])
            logits = self._log_probs(self.post_out(self.post_deter(deter) + embed_part[:, t]))
            state = RSSMState(deter, self.sample(logits, generator), logits)
            posts.append(state)
        post = RSSMState.stack(posts, dim=1)
        # The prior depends on deter only, so all T priors come from one batched call.
        prior_logits = self._log_probs(self.prior_head(post.deter))
        prior = RSSMState(post.deter, self.sample(prior_logits, generator), prior_logits)
        return post, prior

    def imagine(self, state: RSSMState, actions: torch.Tensor,
                generator: Generator = None) -> RSSMState:
        """Roll the prior forward: state [B], actions [B, H, A] -> states [B, H].

        `actions[:, 0]` is taken in `state`'s step and leads to the first imagined step.
        """
        states = []
        for h in range(actions.shape[1]):
            state = self.img_step(state, actions[:, h], generator)
            states.append(state)
        return RSSMState.stack(states, dim=1)

    def perturb(self, state: RSSMState, eps: float | torch.Tensor, generator: Generator = None) -> RSSMState:
        """Noise of scale `eps` on a state (any leading dims), for robustness sweeps.

        deter gets Gaussian noise of std `eps` (deter lives in [-1, 1]); each categorical is
        replaced by a uniformly random class with probability `eps` (logits are kept).
        eps=0 returns the state unchanged; eps=1 replaces every categorical. `eps` may also be a
        tensor [B], one scale per row of the leading (batch) axis (a stress search's episodes).
        """
        if no_noise(eps):
            return state
        codes = state.stoch.shape[:-1]  # [..., S]
        noise = draw("randn", state.deter.shape, generator, state.deter.device).to(state.deter)
        flip = draw("rand", codes, generator, state.stoch.device) < per_row(eps, len(codes), state.stoch)
        random_class = draw("randint", codes, generator, state.stoch.device, args=(self.classes,))
        random_one_hot = F.one_hot(random_class, self.classes).to(state.stoch)
        stoch = torch.where(flip.unsqueeze(-1), random_one_hot, state.stoch)
        return RSSMState(state.deter + per_row(eps, state.deter.dim(), state.deter) * noise, stoch, state.logits)


def no_noise(eps: float | torch.Tensor) -> bool:
    """Whether a perturbation scale (float, or tensor [B] per row) leaves a state as it is: a plain
    0 only (a tensor of zeros still draws its noise, so each row's random stream stays the same)."""
    return not torch.is_tensor(eps) and eps == 0


def per_row(eps: float | torch.Tensor, dims: int, like: torch.Tensor) -> float | torch.Tensor:
    """A scale (float, or [B] per leading row) shaped to broadcast over a tensor of `dims` dims."""
    if not torch.is_tensor(eps):
        return eps
    return eps.to(like.device, like.dtype).reshape(-1, *([1] * (dims - 1)))


def categorical_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) summed over the S categoricals: logits [..., S, K] x2 -> [...]."""
    p_log, q_log = p_logits.log_softmax(-1), q_logits.log_softmax(-1)
    return (p_log.exp() * (p_log - q_log)).sum((-2, -1))


def kl_loss(post_logits: torch.Tensor, prior_logits: torch.Tensor,
            free_bits: float = 1.0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """DreamerV3's balanced KL with free bits: logits [B, T, ..., S, K] x2 -> (losses, diagnostics).

    losses (unscaled; the scales `kl_dyn`, `kl_rep` live in `WorldModelConfig.loss_scales`):
      kl_dyn = max(free_bits, KL(sg(post) || prior))  trains the prior towards the posterior;
      kl_rep = max(free_bits, KL(post || sg(prior)))  regularises the posterior towards the prior.
    Free bits clip each step's KL before the mean (as DreamerV3 does), so steps already under
    `free_bits` nats give no gradient. diagnostics: `kl_dyn_raw`, `kl_rep_raw` (unclipped,
    detached); the raw values are equal (same KL), only their gradients differ.
    """
    dyn_raw = categorical_kl(post_logits.detach(), prior_logits)  # [B, T, ...]
    rep_raw = categorical_kl(post_logits, prior_logits.detach())
    losses = {"kl_dyn": dyn_raw.clamp(min=free_bits).mean(), "kl_rep": rep_raw.clamp(min=free_bits).mean()}
    return losses, {"kl_dyn_raw": dyn_raw.mean().detach(), "kl_rep_raw": rep_raw.mean().detach()}
