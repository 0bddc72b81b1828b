"""Video quality per rollout step: PSNR and SSIM (torchmetrics) of predicted frames, and the
baselines a prediction has to beat.

Baselines: copy-last-frame (the last observed frame repeated: beats any model that only blurs)
and shuffled actions (the same model fed another window's actions: a model that ignores the
actions scores the same with them). Frames are float in [0, 1].
"""

from __future__ import annotations

import torch
from einops import rearrange
from torchmetrics import Metric
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

VIDEO_KINDS = ("model", "copy_last", "shuffled_actions")  # one FrameQuality per kind


def frame_scores(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PSNR (dB) and SSIM per frame, averaged over views: [B, H, V, 3, h, w] x2 -> ([B, H], [B, H])."""
    batch, steps = pred.shape[:2]
    flat_pred = rearrange(pred.float(), "b t v c h w -> (b t v) c h w")
    flat_target = rearrange(target.float(), "b t v c h w -> (b t v) c h w")
    psnr = peak_signal_noise_ratio(flat_pred, flat_target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(flat_pred, flat_target, data_range=1.0, reduction="none")
    return (psnr.reshape(batch, steps, -1).mean(-1), ssim.reshape(batch, steps, -1).mean(-1))


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
    (step h is the (h+1)-th predicted frame). PSNR is averaged per frame (as per-frame PSNR is
    what one looks at in a video), not computed from the mean squared error.
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
        psnr, ssim = frame_scores(pred, target)
        self.psnr_sum += psnr.double().sum(0)
        self.ssim_sum += ssim.double().sum(0)
        self.count += pred.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        return {"psnr": self.psnr_sum / self.count, "ssim": self.ssim_sum / self.count}
