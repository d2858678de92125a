"""Training validation scores the shipped segmenter's labels, not a re-spelled copy of a step.

A spy on the scoring function captures the label arrays that ``Trainer.validate`` scores; each must
equal what ``LobeSegmenter.from_model(...).predict_grid`` (or ``training predict``'s U-Net
segmenter) gives for the same cached scan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from algorithm.segmenter import LobeSegmenter
from training.loop import train as train_mod
from training.config import load_config
from training.loop.export import inference_settings
from training.loop.infer import UNetSegmenter, upsample_stage1_labels
from training.data.toy import write_toy_dataset

TINY = Path(__file__).resolve().parents[1] / "training" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    return write_toy_dataset(tmp_path_factory.mktemp("toy"), range(4))


def _trainer(toy_root: Path, out: Path, **extra) -> train_mod.Trainer:
    values = {"data.root": toy_root, "data.cache_dir": toy_root.parent / "cache", "run.out_dir": out,
              "run.val_tile_out": 36, "run.device": "cpu", **extra}
    config = load_config(TINY, [f"{k}={v}" for k, v in values.items()])
    return train_mod.Trainer(config, torch.device("cpu"), train_mod.DistInfo(), None)


def _scored_labels(monkeypatch, trainer: train_mod.Trainer) -> tuple[list[np.ndarray], list]:
    """Run ``trainer.validate`` on its validation cases; the label arrays it scored, in order."""
    scored: list[np.ndarray] = []
    real_scores = train_mod.lobe_scores

    def spy(pred, ref, spacing_mm_zyx, **kwargs):
        scored.append(np.array(pred, copy=True))
        return real_scores(pred, ref, spacing_mm_zyx, **kwargs)

    monkeypatch.setattr(train_mod, "lobe_scores", spy)
    cache, _, val_keys = trainer.prepare_data()
    assert val_keys, "the toy data set must have validation cases"
    trainer.validate(cache, val_keys)
    return scored, [cache.open(key) for key in val_keys]


def _shipped(trainer: train_mod.Trainer, segmenter_type=LobeSegmenter, **options) -> LobeSegmenter:
    settings = inference_settings(trainer.config)
    return segmenter_type.from_model(trainer.model.eval(), settings, "cpu", **options)


def test_cascade_validation_scores_the_shipped_network_step(monkeypatch, toy_root, tmp_path):
    trainer = _trainer(toy_root, tmp_path / "run")
    trainer.step = 1  # past the stage-I-only phase (stage1_only_iters 0): the cascade is scored
    scored, scans = _scored_labels(monkeypatch, trainer)
    segmenter = _shipped(trainer, tile_out=trainer.config.run.val_tile_out)
    assert len(scored) == 2 * len(scans)  # per case: stage I, then the cascade
    for i, scan in enumerate(scans):
        prediction = segmenter.predict_grid(np.asarray(scan.image, np.float32), scan.spacing_mm_zyx)
        stage1 = upsample_stage1_labels(prediction.stage1_labels, prediction.labels.shape)
        assert len(np.unique(prediction.labels)) > 1  # random weights still give several labels: a real check
        np.testing.assert_array_equal(scored[2 * i], stage1)
        np.testing.assert_array_equal(scored[2 * i + 1], prediction.labels)


def test_stage1_only_validation_scores_the_shipped_stage1(monkeypatch, toy_root, tmp_path):
    trainer = _trainer(toy_root, tmp_path / "run", **{"run.stage1_only_iters": 5})
    scored, scans = _scored_labels(monkeypatch, trainer)
    segmenter = _shipped(trainer, tile_out=trainer.config.run.val_tile_out)
    for i, scan in enumerate(scans):
        prediction = segmenter.predict_grid(np.asarray(scan.image, np.float32), scan.spacing_mm_zyx)
        stage1 = upsample_stage1_labels(prediction.stage1_labels, prediction.labels.shape)
        np.testing.assert_array_equal(scored[2 * i], stage1)
        np.testing.assert_array_equal(scored[2 * i + 1], stage1)


def test_unet_validation_scores_the_training_predict_segmenter(monkeypatch, toy_root, tmp_path):
    trainer = _trainer(toy_root, tmp_path / "run", **{"model.kind": "unet3d"})
    scored, scans = _scored_labels(monkeypatch, trainer)
    segmenter = _shipped(trainer, UNetSegmenter, precision="float32", tile_out=trainer.config.run.val_tile_out)
    assert len(scored) == len(scans)  # no stage I to score
    for labels, scan in zip(scored, scans):
        prediction = segmenter.predict_grid(np.asarray(scan.image, np.float32), scan.spacing_mm_zyx)
        np.testing.assert_array_equal(labels, prediction.labels)
