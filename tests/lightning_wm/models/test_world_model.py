"""What every world model shares (`WorldModel`): the total is the named terms times the one table of
scales, and the PSNR logged in validation is the PSNR `lwm evaluate` reports on the same frames."""

import dataclasses

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.batch import make_random_batch
from lightning_wm.evaluation.evaluator import Evaluator, RolloutSettings
from lightning_wm.models.single_cam.module import SingleCamWorldModel
from tests.lightning_wm.models.multicam.test_module import make_batch, make_rig, scrambled_model

ACTIONS = ["speed", "yaw_rate"]
CONFIG = {"size": "tiny", "context_steps": 4, "psnr_horizons": [1, 4]}


def test_total_is_each_term_times_its_scale():
    torch.manual_seed(0)
    model = SingleCamWorldModel(CONFIG, ACTIONS, (32, 32))
    batch = make_random_batch(batch_size=2, steps=8, height=32, width=32)
    torch.manual_seed(1)
    total, terms = model.losses(batch)
    scales = model.config.loss_scales()
    assert set(scales) == {"image", "kl_dyn", "kl_rep", "ego", "hazard", "bev", "open_loop_image", "open_loop_ego",
                           "open_loop_bev"}
    assert total.item() == pytest.approx(sum(scales[n] * terms[n].item() for n in scales), rel=1e-6)
    # The KL scale lives in one place: doubling it adds exactly one more kl_dyn to the total.
    model.config = dataclasses.replace(model.config, kl_dyn_scale=2 * model.config.kl_dyn_scale)
    torch.manual_seed(1)
    doubled, again = model.losses(batch)
    assert again["kl_dyn"].item() == pytest.approx(terms["kl_dyn"].item())
    assert doubled.item() == pytest.approx(total.item() + 0.5 * terms["kl_dyn"].item(), rel=1e-6)


def test_a_term_without_a_scale_is_refused():
    class Extra(SingleCamWorldModel):
        def loss_terms(self, batch):
            terms, diagnostics = super().loss_terms(batch)
            return {**terms, "surprise": terms["image"]}, diagnostics

    model = Extra(CONFIG, ACTIONS, (32, 32))
    with pytest.raises(AssertionError, match=r"loss terms .*'surprise'.* do not match the scales"):
        model.losses(make_random_batch(batch_size=1, steps=6, height=32, width=32))


def test_validation_psnr_equals_the_evaluation_psnr_on_the_same_frames():
    """Three views whose errors differ: averaging per-view PSNR and pooling the error over views
    (what validation did before) give different numbers; both paths must give the first."""
    dicts, k, e = make_rig()
    model = scrambled_model(dicts, eval_latent="mode")  # deterministic rollouts: the same frames twice
    batch = make_batch(k, e, batch=3, steps=8, seed=4)
    batch["frames"][:, :, 1] = batch["frames"][:, :, 1] * 0.2  # a darker view: its error differs from the others'
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(model, DataLoader([batch], batch_size=None), verbose=False)
    settings = RolloutSettings(context=4, horizons={"4 steps": 4}, action_names=tuple(ACTIONS))
    evaluator = Evaluator(model.eval(), None, settings)
    evaluator.update(batch)
    psnr = evaluator.metrics.video["model"].compute()["psnr"]
    for h in (1, 4):
        assert trainer.callback_metrics[f"val/psnr_h{h}/model"].item() == pytest.approx(psnr[h - 1].item(), abs=1e-4)
    copy_last = evaluator.metrics.video["copy_last"].compute()["psnr"]
    assert trainer.callback_metrics["val/psnr_h1/copy_last"].item() == pytest.approx(copy_last[0].item(), abs=1e-4)
