"""Latent dynamics of the multi-camera world model: one RSSM per view, views mixed at every step.

Choice: a *per-view* latent (each view has its own GRU state and categoricals, with the RSSM
weights of `nn/rssm.py` shared across views) rather than one fused latent. Each view's latent
then only has to describe what that camera sees, as in the single-camera model, and a 6-camera
rig does not squeeze six views through one state. Consistency comes from cross-view attention
on the views' latent tokens at *every* step, observed or imagined: before each transition,
the views' states attend to each other and the result is added to each view's GRU input, so
what the front camera knows about a car reaches the side camera it is driving into.
The KL treatment is the single-camera model's (`nn.rssm.kl_loss`, scaled in `WorldModel.losses`), per view and step.

A view that is not observed at a step (camera missing, or dropped in training) takes its prior
as its state: the dynamics and the other views carry it.
Shapes: B batch, T steps, V views, E embedding, A actions, D deter, S x K categoricals.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lightning_wm.models.nn.attention import CrossViewAttention
from lightning_wm.models.nn.layers import symlog
from lightning_wm.models.nn.rssm import RSSM, Generator, RSSMState
from lightning_wm.models.nn.sizes import WorldModelSize


class MultiViewRSSM(nn.Module):
    """`RSSM` (shared by all views) + cross-view attention between the views' states each step.

    embed_dim E (per-view image embedding after cross-view fusion), action_dim A,
    view_dim (camera embedding per view), heads (attention heads; must divide size.units).
    `mode=True` in observe/imagine takes each categorical's most likely class instead of a
    sample (deterministic rollouts; see `MultiCamConfig.eval_latent`).
    """

    def __init__(self, embed_dim: int, action_dim: int, view_dim: int, size: WorldModelSize, heads: int,
                 unimix: float) -> None:
        super().__init__()
        self.rssm = RSSM(embed_dim, action_dim, size.deter, size.stoch, size.classes, size.units, unimix=unimix)
        self.token_in = nn.Linear(size.feature_dim, size.units)
        self.camera_in = nn.Linear(view_dim, size.units)
        self.mix = CrossViewAttention(size.units, heads)
        self.context_out = nn.Linear(size.units, size.units)
        with torch.no_grad():  # starts as independent per-view RSSMs; attention is learned in
            self.context_out.weight.zero_()
            self.context_out.bias.zero_()

    # ---- pieces ------------------------------------------------------------------------
    def _sample(self, logits: torch.Tensor, generator: Generator, mode: bool) -> torch.Tensor:
        if mode:
            return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
        return self.rssm.sample(logits, generator)

    def _log_probs(self, raw: torch.Tensor) -> torch.Tensor:
        return self.rssm._log_probs(raw)  # the RSSM's unimix categorical, shared on purpose

    def initial(self, batch: int, views: int) -> RSSMState:
        """The learned start state for every view: leading dims [B, V]."""
        state = self.rssm.initial(batch * views)
        fields = (state.deter, state.stoch, state.logits)
        return RSSMState(*(rearrange(x, "(b v) ... -> b v ...", v=views) for x in fields))

    def transition(self, state: RSSMState, action: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """Next deter [B, V, D] from states [B, V], the action [B, A] and camera embeddings [B, V, Cv].

        h_{t,v} = GRU(h_{t-1,v}, img_in([z_{t-1,v}, a_{t-1}]) + attend_v(states_{t-1}, cameras)).
        """
        batch, num_views = state.deter.shape[:2]
        tokens = self.token_in(state.feature())  # [B, V, U]
        context = self.context_out(self.mix(tokens, self.camera_in(views)))  # [B, V, U]
        action = symlog(action)[:, None].expand(-1, num_views, -1)  # [B, V, A]
        x = self.rssm.img_in(torch.cat([state.stoch.flatten(-2), action], -1)) + context
        deter = self.rssm.gru(x.flatten(0, 1), state.deter.flatten(0, 1))  # [B*V, D]
        return deter.unflatten(0, (batch, num_views))

    def prior(self, deter: torch.Tensor, generator: Generator = None, mode: bool = False) -> RSSMState:
        """Prior state from deter [..., D]."""
        logits = self._log_probs(self.rssm.prior_head(deter))
        return RSSMState(deter, self._sample(logits, generator, mode), logits)

    # ---- sequences ---------------------------------------------------------------------
    def observe(self, embeds: torch.Tensor, prev_actions: torch.Tensor, views: torch.Tensor, observed: torch.Tensor,
                generator: Generator = None, mode: bool = False) -> tuple[RSSMState, RSSMState]:
        """embeds [B, T, V, E], prev_actions [B, T, A] (action into each step), views [B, V, Cv],
        observed [B, T, V] bool -> (posts, priors), each [B, T, V].

        Where a view is not observed, its "posterior" is its prior (logits and sample), so its
        KL is zero and its state comes from the dynamics alone.
        """
        batch, steps, num_views = embeds.shape[:3]
        state = self.initial(batch, num_views)
        embed_part = self.rssm.post_embed(embeds)  # [B, T, V, U], all steps in one matmul
        posts = []
        for t in range(steps):  # the time loop: z_t feeds h_{t+1}
            deter = self.transition(state, prev_actions[:, t], views)
            logits = self._log_probs(self.rssm.post_out(self.rssm.post_deter(deter) + embed_part[:, t]))
            seen = observed[:, t, :, None, None]  # [B, V, 1, 1]
            if not bool(seen.all()):
                logits = torch.where(seen, logits, self._log_probs(self.rssm.prior_head(deter)))
            state = RSSMState(deter, self._sample(logits, generator, mode), logits)
            posts.append(state)
        post = RSSMState.stack(posts, dim=1)
        prior_logits = self._log_probs(self.rssm.prior_head(post.deter))  # depends on deter only: batched
        prior = RSSMState(post.deter, self._sample(prior_logits, generator, mode), prior_logits)
        return post, prior

    def imagine(self, state: RSSMState, actions: torch.Tensor, views: torch.Tensor,
                generator: Generator = None, mode: bool = False) -> RSSMState:
        """Roll the priors forward: state [B, V], actions [B, H, A], views [B, V, Cv] -> states [B, H, V]."""
        states = []
        for h in range(actions.shape[1]):
            state = self.prior(self.transition(state, actions[:, h], views), generator, mode)
            states.append(state)
        return RSSMState.stack(states, dim=1)

    def perturb(self, state: RSSMState, eps: float | torch.Tensor, generator: Generator = None) -> RSSMState:
        """The RSSM's latent noise (any leading dims); eps=0 returns `state`."""
        return self.rssm.perturb(state, eps, generator)
