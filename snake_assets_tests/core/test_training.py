"""Tests for the grouped split and Lightning training of the linear head (real training, CPU)."""

import dataclasses
import math
import os

import numpy as np
import pytest
import torch

from snake_assets.core.head import predict_log_probs
from snake_assets.core.training import TrainConfig, fit_linear_head, grouped_split

FAST = TrainConfig(max_epochs=10, batch_size=64, learning_rate=0.1)


def blobs(n_classes_used: int = 5, per_class: int = 40, dim: int = 16, seed: int = 0):
    """Separable Gaussian blobs; two images per observation, HerpMapper-style string ids."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 4.0, size=(n_classes_used, dim))
    labels = np.repeat(np.arange(n_classes_used), per_class)
    features = (centers[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32)
    groups = [f"HM {i // 2}" if i % 3 else str(i // 2) for i in range(len(labels))]
    return features, labels, groups


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These heads are tiny: intra-op threads only add sync overhead (15x on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(one_torch_thread):
    x, y, groups = blobs()
    return fit_linear_head(x, y, groups, num_classes=7, cfg=FAST), (x, y, groups)


# --- grouped split ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 7, 123])
def test_grouped_split_keeps_observations_on_one_side(seed):
    groups = np.array([f"obs{g}" for g in np.random.default_rng(seed).integers(0, 50, size=300)])
    train, val = grouped_split(groups, 0.2, seed)
    assert set(groups[train]).isdisjoint(groups[val])
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(groups)))
    assert len(set(groups[val])) == math.ceil(0.2 * len(set(groups)))
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()
    np.testing.assert_array_equal(grouped_split(groups, 0.2, seed)[1], val)


def test_grouped_split_depends_on_seed():
    groups = [f"obs{i}" for i in range(100)]
    assert len({tuple(grouped_split(groups, 0.2, s)[1]) for s in range(5)}) > 1


@pytest.mark.parametrize("groups, val_fraction", [(["HM 1"] * 5, 0.2), (["a", "b", "c"], 0.0), (["a"], 0.5)])
def test_grouped_split_without_room_for_val_keeps_everything_in_train(groups, val_fraction):
    train, val = grouped_split(groups, val_fraction, 0)
    assert train.tolist() == list(range(len(groups)))
    assert val.size == 0 and val.dtype == np.int64


def test_grouped_split_always_leaves_a_train_group():
    train, val = grouped_split(["a", "a", "b"], 0.9, 0)
    assert len(train) > 0 and len(val) > 0


@pytest.mark.parametrize("val_fraction", [-0.1, 1.0, 1.5])
def test_grouped_split_refuses_bad_fraction(val_fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        grouped_split(["a", "b"], val_fraction, 0)


# --- training --------------------------------------------------------------------------------


def test_trains_separable_blobs_to_high_accuracy_with_label_map_width(trained):
    result, (x, y, _) = trained
    assert result.head_config.num_classes == 7 and result.head_config.in_dim == x.shape[1]
    assert not result.head.training
    m = result.metrics
    assert m["train_accuracy"] >= 0.95 and m["val_accuracy"] >= 0.95
    assert m["n_train"] + m["n_val"] == len(y) and m["n_val"] > 0
    assert m["learning_rate"] == FAST.learning_rate
    assert all(math.isfinite(m[k]) for k in ("train_loss", "val_loss", "epochs"))
    log_probs = predict_log_probs(result.head, x)
    assert log_probs.shape == (len(y), 7)
    assert (log_probs.argmax(1) == y).mean() >= 0.95


def test_unused_label_columns_stay_improbable(trained):
    result, (x, _, _) = trained
    assert predict_log_probs(result.head, x).argmax(1).max() <= 4


def test_same_data_and_seed_give_identical_weights(trained):
    result, (x, y, groups) = trained
    again = fit_linear_head(x, y, groups, num_classes=7, cfg=FAST)
    for name, value in result.head.state_dict().items():
        assert torch.equal(value, again.head.state_dict()[name]), name
    assert again.metrics == result.metrics


def test_other_seed_gives_other_weights(trained):
    result, (x, y, groups) = trained
    other = fit_linear_head(x, y, groups, num_classes=7, cfg=dataclasses.replace(FAST, seed=1, max_epochs=2))
    assert not torch.equal(result.head.linear.weight, other.head.linear.weight)


def test_early_stopping_restores_best_validation_weights():
    rng = np.random.default_rng(0)  # weak signal in many dims: val_loss falls, then overfitting turns it up
    y = rng.integers(0, 4, size=120)
    x = (rng.normal(size=(120, 32)) + 0.3 * rng.normal(size=(4, 32))[y]).astype(np.float32)
    groups = [str(i) for i in range(120)]
    cfg = TrainConfig(max_epochs=200, batch_size=48, learning_rate=0.03, early_stopping_patience=3)
    stopped = fit_linear_head(x, y, groups, num_classes=4, cfg=cfg)
    best, epochs = stopped.metrics["best_epoch"], stopped.metrics["epochs"]
    assert best > 0 and epochs == best + cfg.early_stopping_patience + 1 < cfg.max_epochs
    # Training only up to the best epoch reproduces exactly the weights that were restored.
    upto_best = fit_linear_head(x, y, groups, num_classes=4, cfg=dataclasses.replace(cfg, max_epochs=best + 1))
    assert torch.equal(stopped.head.linear.weight, upto_best.head.linear.weight)


def test_single_observation_trains_without_val_split():
    x, y, _ = blobs(per_class=4)
    result = fit_linear_head(x, y, ["HM 1"] * len(y), num_classes=5, cfg=TrainConfig(max_epochs=3, batch_size=8))
    assert result.metrics["n_val"] == 0 and math.isnan(result.metrics["val_loss"])
    assert result.metrics["epochs"] == 3 and result.metrics["best_epoch"] == 2


def test_lr_find_runs_and_writes_nothing_into_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y, groups = blobs(per_class=20)
    result = fit_linear_head(x, y, groups, num_classes=5, cfg=TrainConfig(max_epochs=3, batch_size=16, lr_find=True))
    lr = result.metrics["learning_rate"]
    assert math.isfinite(lr) and 1e-6 <= lr <= 1.0
    assert os.listdir(tmp_path) == []


def test_training_leaves_torch_determinism_as_it_was():
    before = torch.are_deterministic_algorithms_enabled()
    x, y, groups = blobs(per_class=4)
    fit_linear_head(x, y, groups, num_classes=5, cfg=TrainConfig(max_epochs=1))
    assert torch.are_deterministic_algorithms_enabled() == before


@pytest.mark.parametrize("bad_label", [-1, 7, 100])
def test_labels_outside_label_map_are_refused(bad_label):
    x, y, groups = blobs(per_class=2)
    y = y.copy()
    y[0] = bad_label
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.6"):
        fit_linear_head(x, y, groups, num_classes=7)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda x, y, g: (x, y.astype(float), g), "integers"),
        (lambda x, y, g: (x, y[:-1], g), "feature rows"),
        (lambda x, y, g: (x, y, g[:-1]), "feature rows"),
        (lambda x, y, g: (x[:, 0], y, g), "matrix"),
        (lambda x, y, g: (np.where(np.arange(x.size).reshape(x.shape) == 0, np.nan, x), y, g), "NaN"),
    ],
)
def test_malformed_inputs_are_refused(edit, message):
    x, y, groups = edit(*blobs(per_class=2))
    with pytest.raises(ValueError, match=message):
        fit_linear_head(x, y, groups, num_classes=7)
