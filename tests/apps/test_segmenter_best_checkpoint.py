"""SegmenterRecipe keeps the best evaluation's weights (``save_best``) and ``n_saved`` interval checkpoints."""

from __future__ import annotations

import os

import torch
from ignite.engine import Events
from test_segmenter import _recipe, squares  # noqa: F401  (the module's tiny decathlon folder fixture)


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
    assert files == ["checkpoint_epoch=3.pt", "checkpoint_epoch=4.pt", "model.pt", "model_best.pt"]  # n_saved=2
    assert len(dice) >= 4  # one evaluation per epoch (and the final one)
    best = torch.load(os.path.join(tmp, "models", "model_best.pt"), weights_only=True)
    first_best = weights[max(range(len(dice)), key=lambda i: (dice[i], -i))]  # ignite keeps the first best
    for k, v in first_best.items():
        torch.testing.assert_close(best[k], v)
