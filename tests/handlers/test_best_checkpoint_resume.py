"""``model_best.pt`` across a resumed training: its score record, and only a better score replaces it."""

from __future__ import annotations

import json

import torch
import torch.nn as nn
from ignite.engine import Engine, Events

from monai_wsss.handlers import AtomicCheckpointSaver, read_best_record


def _evaluations(tmp_path, scores, weight_values, resume_best):
    """An evaluator-like engine: epoch ``e`` sets the model's weight to ``weight_values[e]`` and the metric."""
    model = nn.Linear(1, 1, bias=False)
    engine = Engine(lambda e, b: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _score(e):
        with torch.no_grad():
            model.weight.fill_(weight_values[e.state.epoch - 1])
        e.state.metrics["val_mean_dice"] = scores[e.state.epoch - 1]

    AtomicCheckpointSaver(
        str(tmp_path),
        {"model": model},
        save_key_metric=True,
        key_metric_name="val_mean_dice",
        key_metric_filename="model_best.pt",
        key_metric_n_saved=1,
        resume_best=resume_best,
    ).attach(engine)
    engine.run([0], max_epochs=len(scores))


def _best_weight(tmp_path) -> float:
    return float(torch.load(tmp_path / "model_best.pt", weights_only=True)["weight"].item())


def test_best_record_names_the_evaluation_the_weights_come_from(tmp_path):
    _evaluations(tmp_path, [0.5, 0.8, 0.7], [1.0, 2.0, 3.0], resume_best=False)
    assert _best_weight(tmp_path) == 2.0
    record = json.loads((tmp_path / "model_best.json").read_text())
    assert record == {
        "file": "model_best.pt",
        "key_metric": "val_mean_dice",
        "value": 0.8,
        "priority": 0.8,
        "epoch": 2,
        "iteration": 2,
    }


def test_resumed_training_keeps_the_earlier_best_until_beaten(tmp_path):
    _evaluations(tmp_path, [0.5, 0.8], [1.0, 2.0], resume_best=False)
    (tmp_path / "checkpoint_epoch=2.pt").write_bytes(b"x")  # what a resumed training continues from
    _evaluations(tmp_path, [0.6], [5.0], resume_best=True)  # the resumed run's first evaluation is worse
    assert _best_weight(tmp_path) == 2.0
    assert read_best_record(str(tmp_path / "model_best.json"))["value"] == 0.8
    _evaluations(tmp_path, [0.6, 0.9], [5.0, 6.0], resume_best=lambda: True)  # a callable is asked once
    assert _best_weight(tmp_path) == 6.0
    assert read_best_record(str(tmp_path / "model_best.json"))["value"] == 0.9


def test_fresh_training_replaces_the_earlier_best(tmp_path):
    _evaluations(tmp_path, [0.8], [2.0], resume_best=False)
    _evaluations(tmp_path, [0.3], [7.0], resume_best=lambda: False)
    assert _best_weight(tmp_path) == 7.0
    assert read_best_record(str(tmp_path / "model_best.json"))["value"] == 0.3
    _evaluations(tmp_path, [0.1], [8.0], resume_best=True)  # resume on, but no checkpoint to resume from
    assert _best_weight(tmp_path) == 8.0


def test_unreadable_record_counts_as_none(tmp_path, caplog):
    _evaluations(tmp_path, [0.8], [2.0], resume_best=False)
    (tmp_path / "model_best.json").write_text("{not json")
    (tmp_path / "checkpoint_epoch=1.pt").write_bytes(b"x")
    assert read_best_record(str(tmp_path / "model_best.json")) is None
    (tmp_path / "other.json").write_text('{"priority": 0.9}')  # no value / epoch
    assert read_best_record(str(tmp_path / "other.json")) is None
    with caplog.at_level("WARNING"):
        _evaluations(tmp_path, [0.3], [7.0], resume_best=True)  # nothing to compare with: replaced
    assert _best_weight(tmp_path) == 7.0
    assert "model_best.json: not a score record" in caplog.text
