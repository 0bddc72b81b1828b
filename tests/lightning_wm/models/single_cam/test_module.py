"""SingleCamWorldModel end to end on CPU: Lightning fit/validate, metrics, checkpoints, config."""

import dataclasses

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.batch import make_random_batch
from lightning_wm.models.cameras import camera_dict
from lightning_wm.models.rollout import RolloutModel, open_loop
from lightning_wm.models.single_cam.config import SingleCamConfig
from lightning_wm.models.single_cam.module import SingleCamWorldModel
from sharding.errors import ConfigError
from tests.helpers import forward_camera

ACTIONS = ["speed", "yaw_rate"]
CONFIG = {"size": "tiny", "context_steps": 2, "psnr_horizons": [1, 4, 8], "warmup_steps": 2}
CAMERA = camera_dict(forward_camera(32))


def _batches(n: int, seed: int, steps: int = 6, size: int = 32) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [dict(make_random_batch(batch_size=3, steps=steps, height=size, width=size, generator=g)) for _ in range(n)]


def _trainer(**kwargs) -> L.Trainer:
    return L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False, limit_val_batches=1,
                     enable_progress_bar=False, enable_model_summary=False, **kwargs)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny model after 3 Lightning steps, its trainer's metrics, and a saved checkpoint."""
    L.seed_everything(0, workers=True)
    model = SingleCamWorldModel(CONFIG, ACTIONS, (32, 32), rig=[CAMERA])
    trainer = _trainer()
    trainer.fit(model, DataLoader(_batches(3, 0), batch_size=None), DataLoader(_batches(1, 1), batch_size=None))
    train_metrics = dict(trainer.callback_metrics)
    trainer.validate(model, DataLoader(_batches(1, 2), batch_size=None), verbose=False)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    trainer.save_checkpoint(path)
    return model, trainer, train_metrics, dict(trainer.callback_metrics), path


def test_fit_logs_every_named_training_metric(fitted):
    model, trainer, train_metrics, _, _ = fitted
    assert trainer.global_step == 3
    for name in ("image", "kl_dyn", "kl_rep", "ego", "hazard", "total"):
        assert torch.isfinite(train_metrics[f"train/loss/{name}"]), name
    for name in ("train/kl/dyn_raw", "train/kl/rep_raw", "train/grad_norm"):
        assert torch.isfinite(train_metrics[name]), name
    assert train_metrics["train/grad_norm"] > 0
    # warmup of 2 steps is over; the cosine decay over max_steps=3 starts at the full rate
    assert train_metrics["train/lr"].item() == pytest.approx(model.config.lr)


def test_validate_logs_losses_and_psnr_against_baselines(fitted):
    _, _, _, val_metrics, _ = fitted
    for name in ("image", "kl_dyn", "kl_rep", "ego", "hazard", "total"):
        assert torch.isfinite(val_metrics[f"val/loss/{name}"]), name
    for source in ("model", "copy_last", "shuffled_actions"):  # one MLflow chart section per horizon
        for h in (1, 4):
            assert 0 < val_metrics[f"val/psnr_h{h}/{source}"] < 60, (source, h)
        assert f"val/psnr_h8/{source}" not in val_metrics  # 6-step window, 2 context: only 4 imagined steps


def test_lr_warms_up_linearly():
    model = SingleCamWorldModel({**CONFIG, "warmup_steps": 4, "lr": 3e-4}, ACTIONS, (32, 32))  # no trainer: no decay
    optimizers = model.configure_optimizers()
    schedule = optimizers["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(6):
        lrs.append(optimizers["optimizer"].param_groups[0]["lr"])
        optimizers["optimizer"].step()
        schedule.step()
    assert lrs == pytest.approx([0.75e-4, 1.5e-4, 2.25e-4, 3e-4, 3e-4, 3e-4])


def test_checkpoint_round_trip_with_weights_only(fitted):
    model, _, _, _, path = fitted
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"]["model_family"] == "single_cam"
    assert checkpoint["hyper_parameters"]["config"]["size"] == "tiny"
    loaded = SingleCamWorldModel.load_from_checkpoint(path, weights_only=True)
    assert loaded.config == model.config and loaded.action_names == ACTIONS and loaded.image_size == (32, 32)
    assert loaded.rig == [CAMERA] and loaded.turn_prior
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_rollout_interface_shapes_and_action_effect():
    torch.manual_seed(0)
    model = SingleCamWorldModel(CONFIG, ACTIONS, (64, 64)).eval()
    assert isinstance(model, RolloutModel)
    batch = make_random_batch(batch_size=2, steps=16, height=64, width=64)
    frames, actions = batch["frames"], batch["actions"]
    with torch.no_grad():
        state = model.observe(frames[:, :8], actions[:, :8])
        assert state.latent.deter.shape[0] == 2 and torch.equal(state.reference, frames[:, 7, 0])
        future = actions[:, 7:15]
        states = model.imagine(state, future, torch.Generator().manual_seed(1))
        video = model.decode(states)
        assert video.shape == (2, 8, 1, 3, 64, 64) and 0 <= video.min() and video.max() <= 1
        assert model.ego_motion(states).shape == (2, 8, 3) and model.hazard_logits(states).shape == (2, 8)
        same = model.decode(model.imagine(state, future, torch.Generator().manual_seed(1)))
        assert torch.equal(video, same)
        other = model.decode(model.imagine(state, future.flip(0) * 3, torch.Generator().manual_seed(1)))
        assert (other - video).abs().mean() > 1e-4
        assert model.perturb(state, 0.0) is state
        noisy = model.perturb(state, 0.5, torch.Generator().manual_seed(2))
        assert not torch.equal(noisy.latent.deter, state.latent.deter)
        predicted, _ = open_loop(model, frames, actions, context=8, generator=torch.Generator().manual_seed(1))
        # open_loop observes with its own sampling, so only shapes are comparable here.
        assert predicted.shape == video.shape


def test_straight_through_gradient_reaches_the_encoder_through_the_sampled_latent():
    torch.manual_seed(0)
    model = SingleCamWorldModel(CONFIG, ACTIONS, (32, 32))
    batch = make_random_batch(batch_size=2, steps=1, height=32, width=32)
    # One step: deter comes from the learned initial state, so the one-hot sample (argmax, no
    # gradient of its own) is the encoder's only path into this loss.
    embeds, _ = model._embed(batch["frames"])
    post, _ = model.rssm.observe(embeds, model._prev_actions(batch["actions"]))
    loss = (post.stoch * torch.randn(post.stoch.shape)).sum()
    loss.backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_untrained_decoder_starts_near_copying_the_reference_and_depends_on_it():
    torch.manual_seed(0)
    model = SingleCamWorldModel(CONFIG, ACTIONS, (32, 32)).eval()
    batch = make_random_batch(batch_size=2, steps=4, height=32, width=32)
    frames, actions = batch["frames"], batch["actions"]
    with torch.no_grad():
        state = model.observe(frames, actions)
        states = model.imagine(state, actions[:, :3])
        assert states.age.tolist() == [[1, 2, 3], [1, 2, 3]]
        video = model.decode(states)
        reference = frames[:, -1:].expand_as(video)
        # mask ~0.88 at init: much closer to the reference than an unrelated frame is
        assert (video - reference).abs().mean() < 0.5 * (frames[:, :1].expand_as(video) - reference).abs().mean()
        swapped = dataclasses.replace(states, reference=states.reference.flip(0))
        assert (model.decode(swapped) - video).abs().mean() > 0.05


def test_turn_prior_turns_the_decoded_view_with_the_imagined_yaw():
    torch.manual_seed(0)
    model = SingleCamWorldModel(CONFIG, ACTIONS, (32, 32), rig=[CAMERA]).eval()
    frames = torch.zeros(1, 2, 1, 3, 32, 32)
    frames[..., 14:18] = 1.0  # a vertical stripe in the middle
    actions = torch.zeros(1, 2, 2)
    column = torch.arange(32.0)
    with torch.no_grad():
        states = model.imagine(model.observe(frames, actions), actions)
        # without a frame rate, the state's yaw is the running sum of the ego-motion head's yaw ...
        assert torch.allclose(states.yaw, model.ego_motion(states)[..., 2].cumsum(1))
        # ... with one, the integrated yaw_rate action (the vehicle's measured yaw rate)
        timed = SingleCamWorldModel(CONFIG, ACTIONS, (32, 32), rig=[CAMERA], fps=10.0).eval()
        steer = torch.tensor([[[5.0, 0.3], [5.0, -0.1]]])
        assert torch.allclose(timed.imagine(timed.observe(frames, actions), steer).yaw, torch.tensor([[0.03, 0.02]]))

        def stripe_centre(yaw: float) -> float:
            video = model.decode(dataclasses.replace(states, yaw=torch.full_like(states.yaw, yaw)))
            row = video[0, -1, 0, 0, 16]
            return float((row * column).sum() / row.sum())

        straight, left, right = stripe_centre(0.0), stripe_centre(0.2), stripe_centre(-0.2)
        assert left > straight + 2 and right < straight - 2  # turning left moves the view right
        blind = SingleCamWorldModel(CONFIG, ACTIONS, (32, 32)).eval()  # no camera: no prior
        blind.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("bev_head.")})
        assert not blind.turn_prior
        assert torch.equal(blind.decode(dataclasses.replace(states, yaw=states.yaw + 0.2)), blind.decode(states))


def test_open_loop_terms_train_the_dynamics_and_vanish_without_a_future():
    torch.manual_seed(0)
    model = SingleCamWorldModel(CONFIG, ACTIONS, (32, 32))
    _, terms = model.losses(make_random_batch(batch_size=2, steps=6, height=32, width=32))
    assert terms["open_loop_image"] > 0 and terms["open_loop_ego"] > 0
    terms["open_loop_image"].backward()
    assert model.rssm.prior_head[1].weight.grad.abs().sum() > 0  # the prior renders the imagined frames
    _, terms = model.losses(make_random_batch(batch_size=2, steps=2, height=32, width=32))  # T = context
    assert terms["open_loop_image"] == 0 and terms["open_loop_ego"] == 0


def test_a_few_optimiser_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = SingleCamWorldModel({**CONFIG, "lr": 3e-3, "warmup_steps": 0}, ACTIONS, (32, 32))
    optimizer = model.configure_optimizers()["optimizer"]
    batch = make_random_batch(batch_size=4, steps=6, height=32, width=32)
    losses = []
    for _ in range(8):
        loss, _ = model.losses(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize(("key", "value"), [("lr", 0.0), ("free_bits", -1.0), ("unimix", 1.0), ("context_steps", 0),
                                            ("psnr_horizons", [0]), ("compile", "yes"), ("warmup_steps", 1.5),
                                            ("size", "huge"), ("image_scale", "1"),
                                            ("open_loop_scale", -1.0), ("max_reference_age", 0), ("lr_final_fraction", 1.5)])
def test_bad_config_values_raise_config_error_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=f"model.{key}="):
        SingleCamConfig(**{key: value})


def test_unknown_config_key_and_mismatched_batches_raise_config_error():
    with pytest.raises(ConfigError, match="unknown keys \\['learning_rate'\\]"):
        SingleCamWorldModel({"learning_rate": 1e-3}, ACTIONS, (32, 32))
    model = SingleCamWorldModel(CONFIG, ACTIONS, (32, 32))
    with pytest.raises(ConfigError, match="V=2 views"):
        model.losses(make_random_batch(batch_size=1, steps=3, views=2, height=32, width=32))
    with pytest.raises(ConfigError, match="image_size"):
        model.losses(make_random_batch(batch_size=1, steps=3, height=64, width=64))
    with pytest.raises(ConfigError, match="action_names"):
        model.losses(make_random_batch(batch_size=1, steps=3, height=32, width=32, num_actions=3))
