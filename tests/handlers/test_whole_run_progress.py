from __future__ import annotations

from ignite.engine import Engine, Events

from monai_wsss.handlers import ProgressBar


def _engine() -> Engine:
    return Engine(lambda engine, batch: {"loss": float(batch)})


def _record(engine: Engine, bar: ProgressBar) -> list:
    seen = []
    engine.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: seen.append((bar.pbar.n, bar.pbar.total, bar.pbar.desc))
    )
    return seen


def test_bar_counts_the_whole_run_not_one_epoch():
    engine, bar = _engine(), ProgressBar(output_keys=["loss"])
    bar.attach(engine)
    seen = _record(engine, bar)
    engine.run(range(4), max_epochs=3)
    assert [n for n, _, _ in seen] == list(range(1, 13))  # never restarts at an epoch
    assert {total for _, total, _ in seen} == {12}  # 3 epochs x 4 iterations: the estimate is to the end of the run
    assert seen[0][2].startswith("Epoch 1/3") and seen[-1][2].startswith("Epoch 3/3")
    assert bar.pbar is None  # closed on COMPLETED


def test_resumed_run_starts_the_bar_at_the_restored_iteration():
    engine, bar = _engine(), ProgressBar(output_keys=())
    engine.load_state_dict({"iteration": 8, "epoch_length": 4, "max_epochs": 3})
    bar.attach(engine)
    seen = _record(engine, bar)
    engine.run(range(4))
    assert [n for n, _, _ in seen] == [9, 10, 11, 12]
    assert seen[0][1] == 12
