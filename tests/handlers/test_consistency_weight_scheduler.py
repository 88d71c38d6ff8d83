from __future__ import annotations

import math

import pytest
from ignite.engine import Engine, Events

from monai_wsss.handlers import ConsistencyWeightScheduler, sigmoid_rampup


def _formula(iteration, max_weight=1.0, rampup=6000, step=150):
    s = (iteration - 1) // step
    big_s = rampup / step
    return max_weight * math.exp(-5 * (1 - min(s, big_s) / big_s) ** 2)


@pytest.mark.parametrize(
    "iteration, expected",
    [
        (1, math.exp(-5.0)),  # s = 0
        (150, math.exp(-5.0)),  # still s = 0
        (151, math.exp(-5.0 * (39 / 40) ** 2)),  # s = 1 of S = 40
        (3001, math.exp(-1.25)),  # s = 20: half way
        (6000, math.exp(-5.0 * (1 / 40) ** 2)),  # s = 39
        (6001, 1.0),  # s = 40 = S
        (9000, 1.0),  # held at max
    ],
)
def test_reference_schedule(iteration, expected):
    sch = ConsistencyWeightScheduler()  # max 1, 6000 iterations, step 150
    assert sch.weight(iteration) == pytest.approx(expected, rel=1e-12)
    assert sch.weight(iteration) == pytest.approx(_formula(iteration), rel=1e-12)


def test_max_weight_scales_and_first_iteration():
    sch = ConsistencyWeightScheduler(max_weight=0.1, rampup_iterations=40, step_iterations=1)
    assert sch.weight(1) == pytest.approx(0.1 * math.exp(-5.0))
    assert sch.weight(21) == pytest.approx(0.1 * math.exp(-1.25))
    assert sch.weight(41) == pytest.approx(0.1)
    assert sch.weight(1000) == pytest.approx(0.1)


def test_piecewise_constant_and_monotone():
    sch = ConsistencyWeightScheduler(max_weight=2.0, rampup_iterations=600, step_iterations=150)
    ws = [sch.weight(i) for i in range(1, 1001)]
    for block in range(4):
        assert len(set(ws[block * 150 : (block + 1) * 150])) == 1
    assert len(set(ws)) == 5  # s = 0, 1, 2, 3 and the plateau
    assert all(a <= b for a, b in zip(ws, ws[1:], strict=False))
    assert ws[149] < ws[150]
    for i in (1, 150, 151, 451, 601, 1000):
        assert sch.weight(i) == pytest.approx(_formula(i, 2.0, 600, 150))


def test_rampup_not_multiple_of_step():
    sch = ConsistencyWeightScheduler(rampup_iterations=100, step_iterations=30)
    big_s = 100 / 30
    assert sch.weight(91) == pytest.approx(math.exp(-5 * (1 - 3 / big_s) ** 2))
    assert sch.weight(121) == pytest.approx(1.0)


def test_zero_rampup_gives_max():
    sch = ConsistencyWeightScheduler(max_weight=0.7, rampup_iterations=0)
    assert [sch.weight(i) for i in (1, 2, 1000)] == [0.7, 0.7, 0.7]


def test_sigmoid_rampup():
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(5, 10) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(10, 10) == 1.0
    assert sigmoid_rampup(15, 10) == 1.0
    assert sigmoid_rampup(-3, 10) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(3, 0) == 1.0


@pytest.mark.parametrize(
    "kwargs", [{"max_weight": -0.1}, {"rampup_iterations": -1}, {"step_iterations": 0}, {"step_iterations": -150}]
)
def test_invalid_args(kwargs):
    with pytest.raises(ValueError, match="Incompatible"):
        ConsistencyWeightScheduler(**kwargs)


def test_attached_to_engine():
    seen = []

    def step(engine, batch):
        seen.append((engine.state.iteration, engine.state.unsup_weight))

    engine = Engine(step)
    ConsistencyWeightScheduler(max_weight=2.0, rampup_iterations=4, step_iterations=2).attach(engine)
    engine.run(range(3), max_epochs=2)
    # s = 0, 0, 1, 1, 2, 2 with S = 2
    expected = [2 * math.exp(-5), 2 * math.exp(-5), 2 * math.exp(-1.25), 2 * math.exp(-1.25), 2.0, 2.0]
    assert [i for i, _ in seen] == [1, 2, 3, 4, 5, 6]
    assert [w for _, w in seen] == pytest.approx(expected)


def test_custom_attribute_and_resumed_iteration():
    seen = []

    def step(engine, batch):
        seen.append(engine.state.cons_w)

    engine = Engine(step)
    ConsistencyWeightScheduler(rampup_iterations=10, step_iterations=1, attribute="cons_w").attach(engine)

    @engine.on(Events.STARTED)
    def _resume(e):  # as a checkpoint loader would
        e.state.iteration = 5
        e.state.epoch = 1

    engine.run(range(5), max_epochs=2)
    assert seen == pytest.approx([math.exp(-5 * (1 - s / 10) ** 2) for s in range(5, 10)])
