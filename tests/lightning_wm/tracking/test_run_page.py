"""The run page's pieces: params, description, address (no training needed)."""

from lightning_wm.tracking.run_page import describe_run, flat_params, psnr_by_horizon, run_address


def test_params_are_flat_with_nulls_empty_and_lists_one_value():
    config = {"model": {"size": "xs", "bev": None, "horizons": [1, 4], "nested": {"a": 1}}, "tags": {}, "seed": 0}
    assert flat_params(config) == {"model/size": "xs", "model/bev": "", "model/horizons": "[1, 4]",
                                   "model/nested/a": "1", "tags": "{}", "seed": "0"}


def test_psnr_names_old_and_grouped_read_alike():
    old = {"val/psnr/h8": 20.0, "val/psnr_copy_last/h8": 18.0, "val/psnr_shuffled_actions/h8": 19.0}
    grouped = {"val/psnr_h8/model": 20.0, "val/psnr_h8/copy_last": 18.0, "val/psnr_h8/shuffled_actions": 19.0}
    expected = {8: {"model": 20.0, "copy_last": 18.0, "shuffled_actions": 19.0}}
    assert psnr_by_horizon(old) == psnr_by_horizon(grouped) == expected
    assert psnr_by_horizon({"val/psnr_h1/model": 30.0, "val/loss/total": 1.0, "val/bev_iou_h4/agents": 0.5}) == {
        1: {"model": 30.0}}


def test_description_gives_the_longest_horizon_ade_fde_at_3s_and_action_following():
    metrics = {"val/psnr_h1/model": 30.0, "val/psnr_h1/copy_last": 29.0, "val/psnr_h8/model": 21.5,
               "val/psnr_h8/copy_last": 20.25, "val/ade_1s/ego_head": 0.5, "val/ade_3s/ego_head": 1.234,
               "val/fde_3s/ego_head": 2.5, "val/action_following/ego_head": 0.875}
    text = describe_run(metrics, steps=1500, dataset="/data/synthetic", fingerprint="abc123")
    assert "| PSNR at h8, model | 21.50 dB |" in text and "| PSNR at h8, copy-last frame | 20.25 dB |" in text
    assert "| PSNR gain over copy-last at h8 | +1.25 dB |" in text and "h1" not in text
    assert "| ADE at 3 s (ego_head) | 1.23 m |" in text and "| FDE at 3 s (ego_head) | 2.50 m |" in text
    assert "ADE at 1 s" not in text
    assert "| action following (action_following/ego_head) | 0.875 |" in text
    assert "| steps | 1500 |" in text and "`/data/synthetic` (fingerprint `abc123`)" in text
    assert text.splitlines()[2:4] == ["| figure | value |", "|---|---|"]


def test_description_falls_back_to_the_longest_trajectory_horizon_and_copes_with_no_metrics():
    text = describe_run({"val/ade_0.4s/ego_head": 0.25, "val/ade_0.2s/ego_head": 0.125}, 3, "d", "f")
    assert "| ADE at 0.4 s (ego_head) | 0.25 m |" in text and "0.2 s" not in text
    assert "| steps | 3 |" in describe_run({}, 3, "d", "f")


def test_run_address_of_a_server_and_of_a_local_store():
    assert run_address("http://127.0.0.1:5000/", "3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    assert run_address("sqlite:////work/mlflow.db", "1", "abc") == (
        "`mlflow ui --backend-store-uri sqlite:////work/mlflow.db`, then http://127.0.0.1:5000/#/experiments/1/runs/abc")
