"""Tests for the one LinearHead class, its config and batched inference."""

import numpy as np
import pytest
import torch

from snake_assets.core.head import HeadConfig, LinearHead, predict_log_probs


@pytest.fixture
def head() -> LinearHead:
    torch.manual_seed(0)
    return LinearHead(HeadConfig(in_dim=12, num_classes=5))


def test_config_round_trips_through_dict():
    cfg = HeadConfig(in_dim=768, num_classes=1784)
    assert cfg.to_dict() == {"in_dim": 768, "num_classes": 1784}
    assert HeadConfig.from_dict(cfg.to_dict()) == cfg


def test_config_accepts_numpy_ints_as_plain_ints():
    cfg = HeadConfig(in_dim=np.int64(8), num_classes=np.int32(3))
    assert type(cfg.in_dim) is int and type(cfg.num_classes) is int


@pytest.mark.parametrize(
    "in_dim, num_classes",
    [(0, 3), (8, 0), (-1, 3), (8.0, 3), ("8", 3), (True, 3), (None, 3)],
)
def test_config_refuses_non_positive_or_non_int(in_dim, num_classes):
    with pytest.raises(ValueError, match="must be a positive int"):
        HeadConfig(in_dim=in_dim, num_classes=num_classes)


@pytest.mark.parametrize("d", [{"in_dim": 4}, {"num_classes": 4}, {}, {"in_dim": "x", "num_classes": 2}])
def test_config_from_dict_refuses_malformed(d):
    with pytest.raises(ValueError):
        HeadConfig.from_dict(d)


def test_head_is_a_single_linear_layer_sized_by_config(head):
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 1
    assert (linears[0].in_features, linears[0].out_features) == (12, 5)
    assert (head.in_dim, head.num_classes) == (12, 5)


def test_forward_returns_log_probabilities(head):
    out = head(torch.randn(7, 12))
    assert out.shape == (7, 5)
    assert torch.allclose(out.exp().sum(dim=1), torch.ones(7), atol=1e-5)
    assert (out <= 0).all()


def test_predict_log_probs_matches_forward_and_is_float32(head):
    x = np.random.default_rng(0).normal(size=(10, 12))  # float64 in, float32 out
    got = predict_log_probs(head, x)
    assert got.dtype == np.float32 and got.shape == (10, 5)
    with torch.no_grad():
        want = head(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 3, 10, 4096])
def test_predict_log_probs_does_not_depend_on_batch_size(head, batch_size):
    x = np.random.default_rng(1).normal(size=(10, 12)).astype(np.float32)
    np.testing.assert_allclose(predict_log_probs(head, x, batch_size=batch_size), predict_log_probs(head, x), atol=1e-6)


def test_predict_log_probs_switches_to_eval_and_tracks_no_grad(head):
    head.train()
    out = predict_log_probs(head, np.zeros((2, 12), dtype=np.float32))
    assert not head.training
    assert isinstance(out, np.ndarray)


def test_predict_log_probs_on_no_rows(head):
    assert predict_log_probs(head, np.zeros((0, 12), dtype=np.float32)).shape == (0, 5)


def test_predict_log_probs_refuses_other_width_naming_both(head):
    with pytest.raises(ValueError, match=r"feature width 384 .* in_dim 12"):
        predict_log_probs(head, np.zeros((3, 384), dtype=np.float32))


@pytest.mark.parametrize("shape", [(12,), (2, 3, 12)])
def test_predict_log_probs_refuses_non_matrix(head, shape):
    with pytest.raises(ValueError, match="2-D"):
        predict_log_probs(head, np.zeros(shape, dtype=np.float32))


def test_predict_log_probs_refuses_bad_batch_size(head):
    with pytest.raises(ValueError, match="batch_size"):
        predict_log_probs(head, np.zeros((2, 12), dtype=np.float32), batch_size=0)
