"""MultiCamWorldModel on CPU: view-order equivariance, any rig, missing cameras, camera embeddings,
the training step, and the bad inputs (single camera, missing calibration, unknown cameras)."""

import dataclasses
import math

import pytest
import torch

from datamodules.batch import make_random_batch
from lightning_wm.geometry import pixel_grid, rotation_flow
from lightning_wm.models.cameras import match_cameras, rig_from_manifest
from lightning_wm.models.multicam.module import MultiCamWorldModel
from lightning_wm.models.nn.camera_embedding import CameraEmbedding, plucker_rays
from lightning_wm.models.nn.warp_decoder import warp
from lightning_wm.models.rollout import RolloutModel, open_loop
from sharding import contract
from sharding.errors import ConfigError
from sharding.synthetic.camera import CameraConfig, RigConfig

ACTIONS = ["speed", "yaw_rate"]
SIZE = 32
CONFIG = {"size": "tiny", "context_steps": 4, "psnr_horizons": [1, 4], "warmup_steps": 2}


def make_rig(cameras: list[CameraConfig] | None = None) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """(rig dicts, intrinsics [V, 3, 3], ego_from_camera [V, 4, 4]) of a synthetic rig at SIZE."""
    rig = RigConfig(cameras=cameras, width=SIZE, height=SIZE) if cameras else RigConfig(width=SIZE, height=SIZE)
    k, e = rig.intrinsics(), rig.ego_from_camera()
    dicts = [dict(name=n, width=SIZE, height=SIZE, intrinsics=k[i].tolist(), ego_from_camera=e[i].tolist())
             for i, n in enumerate(rig.camera_names)]
    return dicts, torch.tensor(k, dtype=torch.float32), torch.tensor(e, dtype=torch.float32)


def make_batch(intrinsics: torch.Tensor, ego_from_camera: torch.Tensor, batch: int = 2, steps: int = 8, seed: int = 0):
    views = intrinsics.shape[0]
    out = dict(make_random_batch(batch, steps, views, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)))
    out["intrinsics"] = intrinsics.expand(batch, -1, -1, -1).clone()
    out["ego_from_camera"] = ego_from_camera.expand(batch, -1, -1, -1).clone()
    return out


def scrambled_model(rig: list[dict], **config) -> MultiCamWorldModel:
    """A tiny model in eval mode whose weights are all perturbed, so the zero-initialised attention
    outputs are live (a permutation test at initialisation would not exercise them)."""
    torch.manual_seed(0)
    model = MultiCamWorldModel({**CONFIG, **config}, ACTIONS, (SIZE, SIZE), rig)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def rollout(model, batch, generator=None, **kwargs):
    """Observe 4 steps, imagine 4: (frames [B, 4, V, 3, h, w], ego [B, 4, 3], hazard [B, 4], state)."""
    calibration = {"intrinsics": batch["intrinsics"], "ego_from_camera": batch["ego_from_camera"]}
    state = model.observe(batch["frames"][:, :4], batch["actions"][:, :4], generator, **calibration, **kwargs)
    states = model.imagine(state, batch["actions"][:, 3:7], generator)
    return model.decode(states), model.ego_motion(states), model.hazard_logits(states), state


@pytest.fixture(scope="module")
def rig():
    return make_rig()


def test_permuting_views_permutes_outputs(rig):
    dicts, k, e = rig
    model = scrambled_model(dicts, eval_latent="mode")  # deterministic latents (see MultiCamConfig.eval_latent)
    batch = make_batch(k, e)
    order = [2, 0, 1]
    permuted = dict(batch, frames=batch["frames"][:, :, order], intrinsics=batch["intrinsics"][:, order],
                    ego_from_camera=batch["ego_from_camera"][:, order])
    mask = torch.tensor([[True, False, True], [True, True, True]])
    with torch.no_grad():
        for kwargs, permuted_kwargs in (({}, {}), ({"view_mask": mask}, {"view_mask": mask[:, order]})):
            video, ego, hazard, state = rollout(model, batch, torch.Generator().manual_seed(3), **kwargs)
            generator = torch.Generator().manual_seed(3)
            video_p, ego_p, hazard_p, state_p = rollout(model, permuted, generator, **permuted_kwargs)
            # the turn prior's warp resamples at the ego head's yaw, whose mean over views differs in the
            # last bits between orders: sharp edges move by ~1e-4 (a real order dependence moves them by ~0.1)
            torch.testing.assert_close(video_p, video[:, :, order], atol=5e-4, rtol=1e-4)
            torch.testing.assert_close(ego_p, ego, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(hazard_p, hazard, atol=1e-5, rtol=1e-4)
            assert torch.equal(state_p.degraded, state.degraded[:, order])
        # The views do interact: another front frame changes what the side views predict.
        other = dict(batch, frames=batch["frames"].clone())
        other["frames"][:, :, 0] = 1 - other["frames"][:, :, 0]
        video_o = rollout(model, other)[0]
        assert (video_o[:, :, 1:] - video[:, :, 1:]).abs().max() > 1e-3


def test_sampled_rollouts_are_seeded_by_the_generator(rig):
    dicts, k, e = rig
    model, batch = scrambled_model(dicts), make_batch(k, e)
    with torch.no_grad():
        first = rollout(model, batch, torch.Generator().manual_seed(5))[0]
        again = rollout(model, batch, torch.Generator().manual_seed(5))[0]
        other = rollout(model, batch, torch.Generator().manual_seed(6))[0]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_rig_with_one_camera_removed_still_runs(rig):
    dicts, k, e = rig
    model = scrambled_model(dicts)
    assert isinstance(model, RolloutModel)
    batch = make_batch(k, e)
    two = dict(batch, frames=batch["frames"][:, :, [0, 2]], intrinsics=batch["intrinsics"][:, [0, 2]],
               ego_from_camera=batch["ego_from_camera"][:, [0, 2]])
    with torch.no_grad():
        video, ego, hazard, _ = rollout(model, two)
        assert video.shape == (2, 4, 2, 3, SIZE, SIZE) and torch.isfinite(video).all() and ego.shape == (2, 4, 3)
        # Without calibration the rollout Protocol uses the model's rig, narrowed by name.
        model.use_cameras(["front_right", "front"])
        predicted, _ = open_loop(model, batch["frames"][:, :, [2, 0]], batch["actions"], context=4)
        assert predicted.shape == (2, 4, 2, 3, SIZE, SIZE)
        with pytest.raises(ConfigError, match=r"frames have 3 views but the model's cameras are \['front_right'"):
            open_loop(model, batch["frames"], batch["actions"], context=4)
        model.use_cameras(["front", "front_left", "front_right"])
        assert open_loop(model, batch["frames"], batch["actions"], context=4)[0].shape[2] == 3


def test_missing_camera_is_predicted_and_marked_degraded(rig):
    dicts, k, e = rig
    model, batch = scrambled_model(dicts, eval_latent="mode"), make_batch(k, e)
    mask = torch.tensor([[True, False, True], [True, True, True]])
    junk = dict(batch, frames=batch["frames"].clone())
    junk["frames"][0, :, 1] = torch.rand(junk["frames"][0, :, 1].shape)  # the hidden camera's frames: ignored
    with torch.no_grad():
        video, _, _, state = rollout(model, batch, view_mask=mask)
        video_junk, _, _, _ = rollout(model, junk, view_mask=mask)
        video_seen, _, _, _ = rollout(model, junk)
    assert video.shape == (2, 4, 3, 3, SIZE, SIZE) and torch.isfinite(video).all()
    assert state.degraded.tolist() == [[False, True, False], [False, False, False]]
    torch.testing.assert_close(video_junk, video)  # nothing of a hidden camera leaks into any prediction
    assert not torch.allclose(video_seen[0], video_junk[0])  # ... while a visible one is used
    # A camera lost mid-window ([B, T, V] mask) is degraded only if absent at the last context step.
    late = torch.ones(2, 4, 3, dtype=torch.bool)
    late[0, 2:, 2] = False
    late[1, :2, 0] = False
    with torch.no_grad():
        state = rollout(model, batch, view_mask=late)[3]
    assert state.degraded.tolist() == [[False, False, True], [False, False, False]]


def test_camera_embeddings_follow_calibration_not_names():
    embed = CameraEmbedding((SIZE, SIZE), (4, 4), token_dim=16, view_dim=8, units=16)
    _, k, e = make_rig()
    tokens, views = embed(k[None], e[None])
    assert tokens.shape == (1, 3, 16, 16) and views.shape == (1, 3, 8)
    assert not torch.allclose(views[0, 0], views[0, 1])  # front and front_left look different ways
    turned = e.clone()
    turned[0, :3, :3] = e[1, :3, :3]  # the front camera turned to where front_left looks
    torch.testing.assert_close(embed(k[None], turned[None])[1][0, 0], views[0, 1])
    moved = e.clone()
    moved[:, 0, 3] += 1.0  # every camera 1 m further forward
    assert (embed(k[None], moved[None])[1] - views).abs().max() > 1e-4
    zoomed = k.clone()
    zoomed[:, :2, :2] *= 2  # a narrower lens
    assert (embed(zoomed[None], e[None])[0] - tokens).abs().max() > 1e-4


def test_plucker_rays_point_where_the_camera_looks():
    _, k, e = make_rig()
    centre = pixel_grid(SIZE, SIZE, cells=(1, 1))  # the principal point ((W-1)/2, (H-1)/2)
    rays = plucker_rays(k, e, centre)[:, 0]  # [V, 6]
    for view, yaw in enumerate([0.0, 55.0, -55.0]):
        pitch, yaw = math.radians(5.0), math.radians(yaw)
        expected = torch.tensor([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), -math.sin(pitch)])
        torch.testing.assert_close(rays[view, :3], expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(rays[view, 3:], torch.linalg.cross(e[view, :3, 3], expected), atol=1e-5, rtol=0)


def test_training_step_lowers_the_loss_and_keeps_kl_at_free_bits(rig):
    dicts, k, e = rig
    torch.manual_seed(0)
    model = MultiCamWorldModel({**CONFIG, "view_dropout": 0.3}, ACTIONS, (SIZE, SIZE), dicts).train()
    batch = make_batch(k, e, batch=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    totals = []
    for _ in range(6):
        total, terms = model.losses(batch)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    names = [*model.config.loss_scales(), "total"]
    assert set(names) <= set(terms) and all(torch.isfinite(terms[n]) for n in names)
    assert terms["kl_dyn"] >= 1.0 and terms["kl_rep"] >= 1.0  # free bits: 1 nat per view and step
    assert terms["open_loop_image"] > 0 and totals[-1] < totals[0]
    for name in ("camera.token_mlp.1", "fuse.qk", "dynamics.context_out", "dynamics.mix.qk", "decoder.project"):
        grad = dict(model.named_parameters())[f"{name}.weight"].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_view_dropout_hides_whole_views_but_keeps_one(rig):
    dicts, _, _ = rig
    model = MultiCamWorldModel({**CONFIG, "view_dropout": 0.9}, ACTIONS, (SIZE, SIZE), dicts).train()
    torch.manual_seed(0)
    observed = model._view_dropout(64, 5, 3, torch.device("cpu"))
    assert observed.any(-1).all()  # never a window without a camera
    assert (observed == observed[:, :1]).all()  # a hidden camera stays hidden for the whole window
    assert (~observed[:, 0]).sum() > 64  # with p=0.9 most views are hidden
    assert model.eval()._view_dropout(8, 5, 3, torch.device("cpu")).all()  # never in eval


def test_a_single_camera_is_refused_naming_it(rig):
    dicts, k, e = rig
    with pytest.raises(ConfigError, match=r"at least 2 cameras, got \['front'\]"):
        MultiCamWorldModel(CONFIG, ACTIONS, (SIZE, SIZE), dicts[:1])
    model = MultiCamWorldModel(CONFIG, ACTIONS, (SIZE, SIZE), dicts)
    one = make_batch(k[:1], e[:1])
    with pytest.raises(ConfigError, match=r"got 1 camera\(s\) \['view0'\].*trained on \['front', 'front_left'"):
        model.losses(one)


def test_missing_or_broken_calibration_is_refused_naming_the_camera(rig):
    dicts, k, e = rig
    model = MultiCamWorldModel(CONFIG, ACTIONS, (SIZE, SIZE), dicts)
    batch = make_batch(k, e)
    with pytest.raises(ConfigError, match=r"no intrinsics for cameras \['front', 'front_left', 'front_right'\]"):
        model.losses({key: value for key, value in batch.items() if key != "intrinsics"})
    broken = dict(batch, intrinsics=batch["intrinsics"].clone())
    broken["intrinsics"][:, 2] = 0
    with pytest.raises(ConfigError, match=r"camera 'front_right': intrinsics .* are missing or invalid"):
        model.losses(broken)
    cameras = [contract.CameraInfo(d["name"], SIZE, SIZE, d["intrinsics"], d["ego_from_camera"]) for d in dicts]
    cameras[1].intrinsics = []

    class Manifest:  # the fields rig_from_manifest reads
        fps = 12.0

    manifest = Manifest()
    manifest.cameras = cameras
    with pytest.raises(ConfigError, match=r"camera 'front_left' has no intrinsics"):
        rig_from_manifest(manifest, ["front", "front_left"])
    cameras[1].intrinsics = dicts[1]["intrinsics"]
    args = rig_from_manifest(manifest, ["front_right", "front"])
    assert [c["name"] for c in args["rig"]] == ["front_right", "front"] and args["fps"] == 12.0


def test_cameras_unknown_to_the_checkpoint_are_refused_naming_both_lists(rig):
    dicts, _, _ = rig
    assert match_cameras(["front", "front_left", "front_right"], ["front_right", "front"]) == [2, 0]
    with pytest.raises(ConfigError, match=r"cameras \['CAM_BACK'\] of the data are not among the cameras the model was "
                                          r"trained on \['front', 'front_left', 'front_right'\]"):
        match_cameras(["front", "front_left", "front_right"], ["front", "CAM_BACK"])
    renamed = [dict(d, name=f"CAM_{i}") for i, d in enumerate(dicts)]
    model = MultiCamWorldModel(CONFIG, ACTIONS, (SIZE, SIZE), renamed)
    checkpoint = {"hyper_parameters": {"rig": dicts}}
    with pytest.raises(ConfigError, match=r"\['CAM_0', 'CAM_1', 'CAM_2'\] of the data are not among"):
        model.on_load_checkpoint(checkpoint)
    with pytest.raises(ConfigError, match=r"cameras \['back'\] of the data"):
        model.use_cameras(["CAM_0", "back"])


def test_turn_prior_turns_every_view_with_the_commanded_yaw(rig):
    """Each view's warp starts from its own rotation homography: steering left moves every
    view's content right; a view hidden at the end carries the turn since it was last seen."""
    dicts, k, e = rig
    torch.manual_seed(0)
    model = MultiCamWorldModel(CONFIG, ACTIONS, (SIZE, SIZE), dicts, fps=10.0).eval()
    batch = make_batch(k, e, batch=1, steps=4)
    frames = torch.zeros_like(batch["frames"])
    frames[..., 14:18] = 1.0  # a vertical stripe in the middle of every view
    calibration = {"intrinsics": batch["intrinsics"], "ego_from_camera": batch["ego_from_camera"]}
    column = torch.arange(float(SIZE))

    def stripe_centres(yaw_rate: float) -> torch.Tensor:
        actions = torch.tensor([[[5.0, yaw_rate]] * 4])
        with torch.no_grad():
            states = model.imagine(model.observe(frames, actions, **calibration), actions)
            row = model.decode(states)[0, -1, :, 0, SIZE // 2]  # [V, W] the last imagined frame's middle row
        assert torch.allclose(states.yaw, torch.full((1, 4, 3), yaw_rate / 10).cumsum(1))  # integrated yaw_rate
        return (row * column).sum(-1) / row.sum(-1)  # [V]

    straight, left, right = stripe_centres(0.0), stripe_centres(0.5), stripe_centres(-0.5)
    assert (left > straight + 1).all() and (right < straight - 1).all(), (straight, left, right)  # ~2 px each way

    actions = torch.tensor([[[5.0, 0.3]] * 4])
    mask = torch.tensor([[True, True, False, False]])[..., None].expand(1, 4, 3).clone()
    mask[:, :, 0] = True  # front always seen; the side views last seen at step 1
    with torch.no_grad():
        state = model.observe(frames, actions, view_mask=mask, **calibration)
    assert torch.allclose(state.yaw, torch.tensor([[0.0, 0.06, 0.06]]))  # two steps of 0.3 rad/s at 10 Hz

    blind = MultiCamWorldModel({**CONFIG, "turn_prior": False}, ACTIONS, (SIZE, SIZE), dicts, fps=10.0).eval()
    blind.load_state_dict(model.state_dict())
    with torch.no_grad():
        states = blind.imagine(blind.observe(frames, actions, **calibration), actions)
        turned = dataclasses.replace(states, yaw=states.yaw + 0.2)
        assert torch.equal(blind.decode(turned), blind.decode(states))


def test_training_uses_each_views_true_turn_since_its_reference(rig):
    """A batch whose ego turns: the turn prior lowers the teacher-forced image loss of a fresh
    model on frames that really turn (rendered by the same homography) against no prior."""
    dicts, k, e = rig
    batch = make_batch(k, e, batch=2, steps=6)
    yaw = torch.linspace(0, 0.5, 6)  # 0.1 rad per step to the left
    c, s = torch.cos(yaw), torch.sin(yaw)
    ego = torch.eye(4).repeat(2, 6, 1, 1)
    ego[:, :, 0, 0], ego[:, :, 0, 1], ego[:, :, 1, 0], ego[:, :, 1, 1] = c, -s, s, c
    base = torch.nn.functional.interpolate(torch.rand(2 * 3, 3, 8, 8), size=(SIZE, SIZE), mode="bilinear")
    flow = [rotation_flow(k, e, torch.full((3,), float(a)), (SIZE, SIZE)) for a in yaw]  # per view: [V, 2, H, W]
    frames = torch.stack([warp(base, f.repeat(2, 1, 1, 1)).view(2, 3, 3, SIZE, SIZE) for f in flow], 1)
    turning = dict(batch, frames=frames, ego=ego)
    losses = {}
    for prior in (True, False):
        torch.manual_seed(0)
        model = MultiCamWorldModel({**CONFIG, "turn_prior": prior, "view_dropout": 0.0}, ACTIONS, (SIZE, SIZE), dicts)
        with torch.no_grad():
            losses[prior] = model.losses(turning)[1]["image"].item()
    assert losses[True] < 0.8 * losses[False], losses


def test_the_bev_head_reads_every_view_and_a_subset_of_the_rig_keeps_its_slots(rig):
    dicts, k, e = rig
    model = scrambled_model(dicts)
    batch = make_batch(k, e)
    with torch.no_grad():
        state = model.observe(batch["frames"][:, :4], batch["actions"][:, :4], intrinsics=batch["intrinsics"],
                              ego_from_camera=batch["ego_from_camera"])
        observed = model.bev(state)
        imagined = model.bev(model.imagine(state, batch["actions"][:, 3:7]))
        grid = model.config.bev.shape
        assert observed.shape == (2, 3, *grid) and imagined.shape == (2, 4, 3, *grid)
        model.use_cameras(["front_right", "front"])  # two of the three cameras, in another order
        pair = model.observe(batch["frames"][:, :4, [2, 0]], batch["actions"][:, :4])
        maps, pose = model.bev_inputs(pair)
        assert maps.shape[1] == 3 and (maps[:, 1] == 0).all() and (maps[:, 0] != 0).any()  # front_left: no data
        assert (pose == 0).all()  # an observed state: the references are its own frames
        assert model.bev(pair).shape == (2, 3, *grid)
