"""SegmenterRecipe keeps the best evaluation's weights (``save_best``) and ``n_saved`` interval checkpoints."""

from __future__ import annotations

import os

import torch
from ignite.engine import Events
from test_segmenter import _recipe, squares  # noqa: F401  (the module's tiny decathlon folder fixture)

from monai_wsss.handlers import read_best_record


def test_model_best_is_the_best_evaluation_and_n_saved_keeps_checkpoints(tmp_path, squares):  # noqa: F811
    tmp = str(tmp_path)
    recipe = _recipe(squares, tmp, val_interval=1, n_saved=2, save_best=True)
    dice, weights = [], []

    def record(engine):
        dice.append(engine.state.metrics["dice"])
        weights.append({k: v.clone() for k, v in recipe.network.state_dict().items()})

    recipe.evaluator.add_event_handler(Events.COMPLETED, record)
    recipe.run()
    files = sorted(os.listdir(os.path.join(tmp, "models")))
    assert files == ["checkpoint_epoch=3.pt", "checkpoint_epoch=4.pt", "model.pt", "model_best.json", "model_best.pt"]
    assert len(dice) >= 4  # one evaluation per epoch (and the final one)
    best = torch.load(os.path.join(tmp, "models", "model_best.pt"), weights_only=True)
    first_best = weights[max(range(len(dice)), key=lambda i: (dice[i], -i))]  # ignite keeps the first best
    for k, v in first_best.items():
        torch.testing.assert_close(best[k], v)


def test_a_resumed_training_keeps_the_best_of_both_runs(tmp_path, squares):  # noqa: F811
    tmp = str(tmp_path)
    scores, weights = [], []

    def run(num_epochs):
        recipe = _recipe(squares, tmp, val_interval=1, save_best=True, num_epochs=num_epochs)

        def record(engine):
            scores.append(engine.state.metrics["dice"])
            weights.append({k: v.clone() for k, v in recipe.network.state_dict().items()})

        recipe.evaluator.add_event_handler(Events.COMPLETED, record)
        recipe.run()
        return recipe

    run(2)
    first = read_best_record(os.path.join(tmp, "models", "model_best.json"))
    assert first["key_metric"] == "dice" and first["value"] == max(scores)
    resumed = run(4)
    assert resumed.resume_loader.path is not None  # it continued from epoch 2
    best_index = max(range(len(scores)), key=lambda i: (scores[i], -i))  # over both runs, the first best
    record = read_best_record(os.path.join(tmp, "models", "model_best.json"))
    assert record["value"] == scores[best_index]
    best = torch.load(os.path.join(tmp, "models", "model_best.pt"), weights_only=True)
    for k, v in weights[best_index].items():
        torch.testing.assert_close(best[k], v)
