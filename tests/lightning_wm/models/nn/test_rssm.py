"""RSSM numerics: KL balancing and free bits, straight-through samples, action conditioning."""

import math

import pytest
import torch

from lightning_wm.models.nn.rssm import RSSM, RSSMState, categorical_kl, kl_loss


def _rssm(action_dim: int = 2) -> RSSM:
    torch.manual_seed(0)
    return RSSM(embed_dim=12, action_dim=action_dim, deter=16, stoch=4, classes=4, units=16)


def test_categorical_kl_matches_hand_computation():
    p = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # probs [0.25, 0.75] and [0.5, 0.5]
    q = torch.tensor([[0.0, 0.0], [math.log(4.0), 0.0]])  # probs [0.5, 0.5] and [0.8, 0.2]
    expected = (0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
                + 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2))
    assert categorical_kl(p, q).item() == pytest.approx(expected, rel=1e-6)  # summed over the S=2 variables
    assert categorical_kl(p, p).item() == pytest.approx(0.0, abs=1e-7)


def _logits(seed: int, shape=(2, 3, 4, 5)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    post = (3 * torch.randn(shape, generator=g)).requires_grad_()
    prior = (3 * torch.randn(shape, generator=g)).requires_grad_()
    return post, prior


def test_kl_loss_values_without_free_bits_are_unscaled():
    post, prior = _logits(0)
    terms, raw = kl_loss(post, prior, free_bits=0.0)
    kl = categorical_kl(post, prior).mean()
    assert set(terms) == {"kl_dyn", "kl_rep"}  # the scales are WorldModelConfig.loss_scales'
    assert terms["kl_dyn"].item() == pytest.approx(kl.item(), rel=1e-6)
    assert terms["kl_rep"].item() == pytest.approx(kl.item(), rel=1e-6)
    assert raw["kl_dyn_raw"].item() == pytest.approx(kl.item(), rel=1e-6)


def test_dyn_term_trains_only_the_prior_and_rep_only_the_posterior():
    post, prior = _logits(1)
    terms, _ = kl_loss(post, prior, free_bits=0.0)
    terms["kl_dyn"].backward()
    assert post.grad is None and prior.grad.abs().sum() > 0

    post, prior = _logits(1)
    terms, _ = kl_loss(post, prior, free_bits=0.0)
    terms["kl_rep"].backward()
    assert prior.grad is None and post.grad.abs().sum() > 0


def test_free_bits_clip_each_step_and_stop_its_gradient():
    post = torch.tensor([[[[0.0, math.log(3.0)]], [[0.0, 8.0]]]], requires_grad=True)  # [B=1, T=2, S=1, K=2]
    prior = torch.zeros(1, 2, 1, 2, requires_grad=True)
    raw = categorical_kl(post, prior)[0]
    free_bits = 0.5 * (raw[0] + raw[1]).item()  # between the two steps' KLs
    assert raw[0] < free_bits < raw[1]
    terms, diagnostics = kl_loss(post, prior, free_bits=free_bits)
    assert terms["kl_dyn"].item() == pytest.approx((free_bits + raw[1].item()) / 2, rel=1e-6)
    assert diagnostics["kl_dyn_raw"].item() == pytest.approx(raw.mean().item(), rel=1e-6)
    (0.5 * terms["kl_dyn"] + 0.1 * terms["kl_rep"]).backward()
    assert post.grad[0, 0].abs().sum() == 0 and prior.grad[0, 0].abs().sum() == 0  # clipped step
    assert post.grad[0, 1].abs().sum() > 0 and prior.grad[0, 1].abs().sum() > 0

    # Everything under the threshold: constant loss, no gradient at all.
    post.grad, prior.grad = None, None
    terms, _ = kl_loss(post, prior, free_bits=100.0)
    assert terms["kl_dyn"].item() == terms["kl_rep"].item() == pytest.approx(100.0)
    (terms["kl_dyn"] + terms["kl_rep"]).backward()
    assert post.grad.abs().sum() == 0 and prior.grad.abs().sum() == 0


def test_unimix_keeps_every_class_possible():
    rssm = _rssm()
    log_probs = rssm._log_probs(torch.tensor([[100.0, 0, 0, 0] * 4]))  # [1, S=4, K=4], near one-hot
    probs = log_probs.exp()
    assert torch.allclose(probs.sum(-1), torch.ones(1, 4))
    assert probs.min().item() == pytest.approx(0.01 / 4, rel=1e-4)
    assert probs.max().item() == pytest.approx(0.99 + 0.01 / 4, rel=1e-4)


def test_samples_follow_the_categorical_distribution():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])  # [S=2, K=4]
    logits = probs.log().expand(20_000, 2, 4)
    frequencies = RSSM.sample(logits, torch.Generator().manual_seed(0)).mean(0)
    assert torch.allclose(frequencies, probs, atol=0.015), frequencies


def test_straight_through_sample_is_one_hot_and_passes_gradient_to_the_encoder_side():
    rssm = _rssm()
    embeds = torch.randn(3, 5, 12, requires_grad=True)  # stands in for encoder outputs
    post, prior = rssm.observe(embeds, torch.randn(3, 5, 2))
    assert torch.allclose(post.stoch.sum(-1), torch.ones(3, 5, 4))
    assert set(post.stoch.detach().round().unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(post.stoch.detach(), post.stoch.detach().round(), atol=1e-6)
    # Step 0's deter comes from the initial state, so its stoch is the only path to embeds[:, 0].
    weights = torch.randn(4, 4)
    (post.stoch[:, 0] * weights).sum().backward()
    assert embeds.grad[:, 0].abs().sum() > 0


def test_observe_and_imagine_shapes_and_prior_is_from_deter():
    rssm = _rssm()
    post, prior = rssm.observe(torch.randn(3, 5, 12), torch.randn(3, 5, 2))
    assert post.deter.shape == (3, 5, 16) and post.stoch.shape == (3, 5, 4, 4) and post.logits.shape == (3, 5, 4, 4)
    assert torch.equal(prior.deter, post.deter)
    assert post.feature().shape == (3, 5, 16 + 16)
    states = rssm.imagine(post[:, -1], torch.randn(3, 7, 2))
    assert states.deter.shape == (3, 7, 16) and states.stoch.shape == (3, 7, 4, 4)


def test_imagine_depends_on_actions_and_is_deterministic_given_a_generator():
    rssm = _rssm()
    start = rssm.initial(2)
    actions = torch.randn(2, 6, 2)
    a = rssm.imagine(start, actions, torch.Generator().manual_seed(3))
    b = rssm.imagine(start, actions, torch.Generator().manual_seed(3))
    assert torch.equal(a.deter, b.deter) and torch.equal(a.stoch, b.stoch)
    c = rssm.imagine(start, actions + 1.0, torch.Generator().manual_seed(3))
    assert not torch.allclose(a.deter[:, 0], c.deter[:, 0])  # the first step already differs
    d = rssm.imagine(start, actions, torch.Generator().manual_seed(4))
    assert not torch.equal(a.stoch, d.stoch)  # another seed draws other samples


def test_perturb_scales_with_eps_and_zero_is_identity():
    rssm = _rssm()
    state = rssm.initial(64)
    assert rssm.perturb(state, 0.0) is state
    small = rssm.perturb(state, 0.01, torch.Generator().manual_seed(0))
    large = rssm.perturb(state, 1.0, torch.Generator().manual_seed(0))
    again = rssm.perturb(state, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(large.deter, again.deter) and torch.equal(large.stoch, again.stoch)
    small_change = (small.deter - state.deter).abs().mean()
    large_change = (large.deter - state.deter).abs().mean()
    assert 0 < small_change < large_change
    flipped = lambda s: (s.stoch.argmax(-1) != state.stoch.argmax(-1)).float().mean()  # noqa: E731
    assert flipped(small) < 0.05 and flipped(large) > 0.5  # eps=1: random classes, 3/4 differ
    assert torch.allclose(large.stoch.sum(-1), torch.ones(64, 4))


def test_perturb_takes_one_scale_per_episode():
    rssm = _rssm()
    state = rssm.initial(3)
    scales = torch.tensor([0.0, 0.01, 1.0])
    mixed = rssm.perturb(state, scales, [torch.Generator().manual_seed(i) for i in range(3)])
    assert torch.equal(mixed.deter[0], state.deter[0]) and torch.equal(mixed.stoch[0], state.stoch[0])  # eps 0
    alone = rssm.perturb(state[2:3], 1.0, [torch.Generator().manual_seed(2)])  # the same row with its own scalar
    assert torch.equal(mixed.deter[2], alone.deter[0]) and torch.equal(mixed.stoch[2], alone.stoch[0])
    assert 0 < (mixed.deter[1] - state.deter[1]).abs().max() < (mixed.deter[2] - state.deter[2]).abs().max()


def test_state_indexing_and_stack_round_trip():
    rssm = _rssm()
    post, _ = rssm.observe(torch.randn(2, 3, 12), torch.randn(2, 3, 2))
    restacked = RSSMState.stack([post[:, t] for t in range(3)], dim=1)
    assert torch.equal(restacked.deter, post.deter) and torch.equal(restacked.logits, post.logits)
