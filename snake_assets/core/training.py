"""Train the linear head on frozen embeddings with PyTorch Lightning.

The split is grouped by observation, so images of one observation never sit on
both sides, and ``num_classes`` always comes from the label map: a class that has
no training image still gets an output column, so labels keep their meaning.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping
from pytorch_lightning.tuner import Tuner
from sklearn.model_selection import GroupShuffleSplit
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from snake_assets.core.head import HeadConfig, LinearHead, predict_log_probs

logger = logging.getLogger(__name__)

_LR_FIND_STEPS = 100
# Lightning warnings that are expected here: features sit in memory, so worker
# processes would only add overhead, and a run without a val split is legitimate.
_BENIGN_WARNINGS = (r".*does not have many workers.*", r".*`validation_step` but have no `val_dataloader`.*")


@dataclass(frozen=True)
class TrainConfig:
    """How to fit the head; defaults are the paper's recipe."""

    recipe: str = "cls"
    """Feature recipe the head is trained on (``cls``, ``patch_mean``, ``dct8x8``)."""
    max_epochs: int = 60
    batch_size: int = 256
    learning_rate: float = 1e-3
    """Adam learning rate; ignored when ``lr_find`` picks one."""
    weight_decay: float = 0.0
    lr_find: bool = False
    """Run Lightning's learning-rate range test and train with its suggestion."""
    val_fraction: float = 0.2
    """Share of observations held out for early stopping and validation metrics."""
    seed: int = 0
    early_stopping_patience: int = 10
    accelerator: str = "cpu"
    """Lightning accelerator; the head is small, and CPU keeps runs bit-for-bit reproducible."""


@dataclass
class TrainedHead:
    """A fitted head (eval mode, best validation weights) and how it got there."""

    head: LinearHead
    head_config: HeadConfig
    metrics: dict[str, float]
    """train/val loss and accuracy, epochs, best_epoch, learning_rate, n_train, n_val."""


def grouped_split(groups: Sequence[str], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into train and val so that no group is on both sides.

    Args:
        groups: one observation id per row.
        val_fraction: share of groups sent to val, in ``[0, 1)``.
        seed: random state; the same groups and seed give the same split.

    Returns:
        Sorted ``(train_idx, val_idx)`` int64 arrays; ``val_idx`` is empty when
        there are fewer than two groups or ``val_fraction`` is 0.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    groups = np.asarray(groups).astype(str)
    n_groups = len(np.unique(groups))
    n_val_groups = min(math.ceil(val_fraction * n_groups), n_groups - 1)
    if n_val_groups < 1:
        return np.arange(len(groups), dtype=np.int64), np.empty(0, dtype=np.int64)
    splitter = GroupShuffleSplit(n_splits=1, test_size=n_val_groups, random_state=seed)
    train_idx, val_idx = next(splitter.split(np.zeros(len(groups)), groups=groups))
    return np.sort(train_idx).astype(np.int64), np.sort(val_idx).astype(np.int64)


class HeadModule(pl.LightningModule):
    """Lightning wrapper that trains a :class:`LinearHead` with NLL loss and Adam."""

    def __init__(self, head: LinearHead, learning_rate: float, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["head"])
        self.head = head
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.nll_loss(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        log_probs = self(x)
        self.log("val_loss", F.nll_loss(log_probs, y), on_epoch=True, batch_size=len(y))
        self.log("val_acc", (log_probs.argmax(-1) == y).float().mean(), on_epoch=True, batch_size=len(y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.head.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)


class _BestWeights(Callback):
    """Keep an in-memory copy of the head weights with the lowest val_loss."""

    def __init__(self) -> None:
        self.best_loss = math.inf
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: HeadModule) -> None:
        loss = trainer.callback_metrics.get("val_loss")
        if trainer.sanity_checking or loss is None or not float(loss) < self.best_loss:
            return
        self.best_loss, self.best_epoch = float(loss), trainer.current_epoch
        self.state = {k: v.detach().clone() for k, v in pl_module.head.state_dict().items()}


def fit_linear_head(
    features: np.ndarray,
    labels: np.ndarray,
    groups: Sequence[str],
    *,
    num_classes: int,
    cfg: TrainConfig = TrainConfig(),
) -> TrainedHead:
    """Train a :class:`LinearHead` on an embedding matrix.

    Args:
        features: ``(n, in_dim)`` embeddings; ``in_dim`` sets the head's input width.
        labels: ``(n,)`` training labels in ``0..num_classes-1`` (from the label map).
        groups: ``(n,)`` observation ids; the train/val split is grouped on them.
        num_classes: ``label_map.num_classes``, never the number of labels seen.
        cfg: training recipe.

    Returns:
        The head with its best-validation weights, in eval mode, and its metrics.

    Raises:
        ValueError: shapes disagree, features are not finite, or a label is out of range.
    """
    x, y = _check_inputs(features, labels, groups, num_classes)
    train_idx, val_idx = grouped_split(groups, cfg.val_fraction, cfg.seed)
    head_config = HeadConfig(in_dim=x.shape[1], num_classes=num_classes)
    with _scoped_torch_determinism(), warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        for pattern in _BENIGN_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        head = LinearHead(head_config)
        module = HeadModule(head, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay)
        if cfg.lr_find:
            module.learning_rate = _find_learning_rate(module, _loader(x, y, train_idx, cfg), cfg, tmp)
        val_loader = _loader(x, y, val_idx, cfg, shuffle=False) if len(val_idx) else None
        best = _BestWeights()
        callbacks: list[Callback] = [best]
        if val_loader is not None:
            callbacks.append(EarlyStopping("val_loss", patience=cfg.early_stopping_patience, mode="min"))
        trainer = _trainer(cfg, tmp, callbacks, max_epochs=cfg.max_epochs)
        trainer.fit(module, _loader(x, y, train_idx, cfg), val_loader)
        if best.state is not None:
            head.load_state_dict(best.state)
    head.eval()
    epochs = trainer.current_epoch
    best_epoch = best.best_epoch if best.state is not None else epochs - 1  # no val split: last epoch
    metrics = {"epochs": epochs, "best_epoch": best_epoch, "learning_rate": module.learning_rate}
    for name, idx in (("train", train_idx), ("val", val_idx)):
        metrics.update(_evaluate(head, x[idx], y[idx], name))
    logger.info("Trained linear head %s: %s", head_config, metrics)
    return TrainedHead(head=head, head_config=head_config, metrics=metrics)


def _check_inputs(features, labels, groups, num_classes) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"features must be a non-empty (n, dim) matrix, got shape {x.shape}")
    if y.shape != (x.shape[0],) or len(groups) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} feature rows but labels {y.shape} and {len(groups)} groups")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must be in 0..{num_classes - 1} (label map size), got {y.min()}..{y.max()}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    return x, y.astype(np.int64)


def _loader(x: np.ndarray, y: np.ndarray, idx: np.ndarray, cfg: TrainConfig, *, shuffle: bool = True) -> DataLoader:
    data = TensorDataset(torch.from_numpy(x[idx]), torch.from_numpy(y[idx]))
    # An explicit generator makes the shuffle order depend on the seed only.
    generator = torch.Generator().manual_seed(cfg.seed)
    return DataLoader(data, batch_size=cfg.batch_size, shuffle=shuffle, generator=generator)


def _trainer(cfg: TrainConfig, root: str, callbacks: list[Callback], **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator=cfg.accelerator,
        devices=1,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=root,  # the LR finder's scratch checkpoint lands here, not in the cwd
        callbacks=callbacks,
        **kwargs,
    )


def _find_learning_rate(module: HeadModule, loader: DataLoader, cfg: TrainConfig, root: str) -> float:
    """Lightning's LR range test; falls back to ``cfg.learning_rate`` when it has no suggestion."""
    trainer = _trainer(cfg, root, [], max_epochs=-1, max_steps=_LR_FIND_STEPS)
    finder = Tuner(trainer).lr_find(
        module, train_dataloaders=loader, min_lr=1e-6, max_lr=1.0, num_training=_LR_FIND_STEPS, update_attr=False
    )
    suggestion = finder.suggestion() if finder is not None else None
    if suggestion is None or not math.isfinite(suggestion):
        logger.warning("LR finder gave no suggestion; keeping learning_rate=%s", cfg.learning_rate)
        return cfg.learning_rate
    logger.info("LR finder suggests learning_rate=%.3g", suggestion)
    return float(suggestion)


def _evaluate(head: LinearHead, x: np.ndarray, y: np.ndarray, name: str) -> dict[str, float]:
    if len(y) == 0:
        return {f"{name}_loss": math.nan, f"{name}_accuracy": math.nan, f"n_{name}": 0}
    log_probs = predict_log_probs(head, x)
    loss = float(-log_probs[np.arange(len(y)), y].mean())
    return {f"{name}_loss": loss, f"{name}_accuracy": float((log_probs.argmax(1) == y).mean()), f"n_{name}": len(y)}


@contextlib.contextmanager
def _scoped_torch_determinism() -> Iterator[None]:
    """Undo ``deterministic=True``'s process-wide switch once training ends.

    Lightning turns on ``torch.use_deterministic_algorithms`` for the whole process;
    left on, it would make later CUDA work (embedding extraction) raise on ops
    that have no deterministic kernel.
    """
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
