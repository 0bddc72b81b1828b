"""Under two-process DDP (gloo on CPU) the evaluation metrics equal the single-process values
on the same data: every state is reduced across ranks, not averaged per rank."""

import json
import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightning_wm.evaluation.evaluator import EvaluationMetrics, RolloutSettings

SETTINGS = RolloutSettings(context=2, horizons={"0.4s": 4, "0.6s": 6}, action_names=("speed", "yaw_rate"))
BATCH_SIZES = [3, 1, 2, 4, 2]  # uneven on purpose: rank 0 gets 3 + 2 + 2 windows, rank 1 gets 1 + 4


def make_batch(index: int) -> dict[str, torch.Tensor]:
    """Batch `index` of made-up rollout outputs, the same in every process."""
    g = torch.Generator().manual_seed(100 + index)
    b, h = BATCH_SIZES[index], SETTINGS.horizon
    target = torch.rand(b, h, 1, 3, 16, 16, generator=g)
    return {
        "pred_poses": torch.randn(b, h, 3, generator=g).cumsum(1), "true_poses": torch.randn(b, h, 3, generator=g).cumsum(1),
        "yaw": torch.randn(b, generator=g), "commanded": torch.randint(0, 2, (b,), generator=g).float() * 2 - 1,
        "logits": torch.randn(b, h, generator=g), "hazard": (torch.rand(b, h, generator=g) > 0.7).float(),
        "target": target, "video": (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1),
    }


def feed(metrics: EvaluationMetrics, batch: dict[str, torch.Tensor]) -> None:
    for source in metrics.trajectory.values():
        source.update(batch["pred_poses"], batch["true_poses"])
    for source in metrics.action_following.values():
        source.update(batch["yaw"], batch["commanded"])
    metrics.hazard.update(batch["logits"], batch["hazard"])
    for kind in metrics.video.values():
        kind.update(batch["video"], batch["target"])


def evaluate(indices: list[int]) -> dict:
    metrics = EvaluationMetrics(SETTINGS, with_idm=True)
    for index in indices:
        feed(metrics, make_batch(index))
    return metrics.compute()


def ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        mine = [i for i in range(len(BATCH_SIZES)) if i % world == rank]
        results = evaluate(mine)  # compute() syncs the states of both ranks
        with open(f"{out}.rank{rank}", "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


def leaves(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from leaves(value, f"{prefix}/{key}")
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from leaves(value, f"{prefix}[{i}]")
    else:
        yield prefix, tree


def test_two_rank_metrics_equal_single_process(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "results")
    mp.spawn(ddp_worker, args=(2, port, out), nprocs=2, join=True)
    single = evaluate(list(range(len(BATCH_SIZES))))
    half = evaluate([0, 2, 4])  # what rank 0 alone would report without the reduction
    expected = dict(leaves(single))
    assert len(expected) > 40
    for rank in range(2):
        with open(f"{out}.rank{rank}") as f:
            got = dict(leaves(json.load(f)))
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert value is not None and math.isfinite(value), key
            assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    unreduced = dict(leaves(half))
    assert unreduced["/trajectory/generated/ade/0.6s"] != pytest.approx(expected["/trajectory/generated/ade/0.6s"])
    assert unreduced["/hazard/examples"] == 7 * SETTINGS.horizon and expected["/hazard/examples"] == 12 * SETTINGS.horizon
