"""Video quality per rollout step: PSNR and SSIM of predicted frames, and the baselines a
prediction has to beat. The one definition both validation (`val/psnr/h<k>`) and `lwm evaluate` use.

PSNR is computed per image (one camera's frame at one step) from that image's mean squared
error, then averaged over the views of the step: each camera's frame counts alike, whatever the
others' errors (pooling the error over views would let one bad view dominate). It is averaged
per frame, not computed from the mean error over a dataset, as per-frame PSNR is what one
looks at in a video. Baselines: copy-last-frame (the last observed frame repeated: beats any
model that only blurs) and shuffled actions (the same model fed another window's actions: a
model that ignores the actions scores the same with them). Frames are float in [0, 1].
"""

from __future__ import annotations

import torch
from einops import rearrange
from torchmetrics import Metric
from torchmetrics.functional.image import structural_similarity_index_measure

VIDEO_KINDS = ("model", "copy_last", "shuffled_actions")  # one FrameQuality per kind in `lwm evaluate`
MIN_MSE = 1e-10  # identical frames score 100 dB, not infinity


def frame_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [0, 1], per image then averaged over views: [B, H, V, 3, h, w] x2 -> [B, H]."""
    mse = (pred.float() - target.float()).square().flatten(3).mean(-1)  # [B, H, V]
    return (-10 * torch.log10(mse.clamp_min(MIN_MSE))).mean(-1)


def frame_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM (torchmetrics, Gaussian window) per image, averaged over views: [B, H, V, 3, h, w] x2 -> [B, H]."""
    batch, steps = pred.shape[:2]
    flat_pred = rearrange(pred.float(), "b t v c h w -> (b t v) c h w")
    flat_target = rearrange(target.float(), "b t v c h w -> (b t v) c h w")
    ssim = structural_similarity_index_measure(flat_pred, flat_target, data_range=1.0, reduction="none")
    return ssim.reshape(batch, steps, -1).mean(-1)


def copy_last_frame(frames: torch.Tensor, context: int, horizon: int) -> torch.Tensor:
    """The copy-last-frame baseline: frames [B, T, V, 3, h, w] -> [B, horizon, V, 3, h, w], frame
    context-1 repeated."""
    return frames[:, context - 1 : context].expand(-1, horizon, -1, -1, -1, -1)


def shuffled_actions(actions: torch.Tensor) -> torch.Tensor | None:
    """Each window gets the next window's actions (a derangement of the batch): [B, H, A] -> [B, H, A];
    None for a batch of one, which has no other window to borrow from."""
    return actions.roll(1, dims=0) if actions.shape[0] > 1 else None


class FrameQuality(Metric):
    """Mean PSNR and SSIM at each rollout step over all windows seen.

    update(pred [B, H, V, 3, h, w], target [B, H, V, 3, h, w]); compute -> {"psnr": [H], "ssim": [H]}
    (step h is the (h+1)-th predicted frame), with `frame_psnr` and `frame_ssim`. Sums reduce
    across DDP ranks.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, steps: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.steps = steps
        self.add_state("psnr_sum", torch.zeros(steps, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("ssim_sum", torch.zeros(steps, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        assert pred.shape == target.shape and pred.shape[1] == self.steps, (
            f"pred {list(pred.shape)} / target {list(target.shape)}: expected {self.steps} steps")
        self.psnr_sum += frame_psnr(pred, target).double().sum(0)
        self.ssim_sum += frame_ssim(pred, target).double().sum(0)
        self.count += pred.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        return {"psnr": self.psnr_sum / self.count, "ssim": self.ssim_sum / self.count}
