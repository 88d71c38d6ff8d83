from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest

from monai_wsss.active import AnnotationState, FileAnnotator, SimulatedAnnotator, plane_mask

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHAPE = (6, 5, 4)


def _gt():
    return (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 3).astype(np.int16)


def test_update_records_and_reloads(tmp_path):
    gt = _gt()
    state = AnnotationState.load_or_create(str(tmp_path), SHAPE)
    oracle = SimulatedAnnotator(gt)
    q1 = np.zeros(SHAPE, bool)
    q1[0] = True
    rec = state.update(0, q1, oracle(q1), region_ids=[3, 7])
    assert rec["voxels"] == 20 and rec["region_ids"] == [3, 7] and rec["plane"] is None
    q2 = plane_mask(SHAPE, (0, 0, 1), 0.5, 1.0)  # slice z = 2
    state.update(1, q2[None], oracle(q2)[None], plane={"normal": [0, 0, 1], "offset": 0.5})
    assert sorted(os.listdir(tmp_path)) == ["labels.nii.gz", "queries.json"]  # no temporary file left
    back = AnnotationState.load(str(tmp_path))
    np.testing.assert_array_equal(back.annotated, q1 | q2)
    np.testing.assert_array_equal(back.labels[q1 | q2], gt[q1 | q2])
    assert (back.labels[~(q1 | q2)] == -1).all()
    assert [q["round"] for q in back.queries] == [0, 1] and back.next_round == 2
    assert back.n_annotated == (q1 | q2).sum() == 20 + 30 - 5  # x = 0 face (5 x 4) + z = 2 slice (6 x 5), overlap 5
    assert back.queries[1]["plane"]["offset"] == 0.5
    on_disk = nib.load(state.labels_path)
    assert on_disk.shape == SHAPE and np.asarray(on_disk.dataobj).dtype == np.int16
    with pytest.raises(ValueError, match="expected"):
        AnnotationState.load_or_create(str(tmp_path), (6, 5, 5))


def test_failed_write_keeps_previous_state(tmp_path, monkeypatch):
    state = AnnotationState.load_or_create(str(tmp_path), SHAPE)
    q = np.zeros(SHAPE, bool)
    q[1, 1, 1] = True
    state.update(0, q, np.where(q, 2, -1))

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        state.update(1, ~q, np.where(~q, 1, -1))
    monkeypatch.undo()
    back = AnnotationState.load(str(tmp_path))  # the last completed round is intact
    assert back.n_annotated == 1 and back.labels[1, 1, 1] == 2 and len(back.queries) == 1
    assert sorted(os.listdir(tmp_path)) == ["labels.nii.gz", "queries.json"]


def test_killed_loop_resumes_without_losing_annotations(tmp_path):
    """A real process answers queries round by round and is SIGKILLed; reloading keeps every finished round."""
    script = textwrap.dedent(
        f"""
        import sys, time
        import numpy as np
        from monai_wsss.active import AnnotationState, SimulatedAnnotator
        shape = {SHAPE}
        gt = (np.arange(np.prod(shape)).reshape(shape) % 3).astype(np.int16)
        state = AnnotationState.load_or_create(sys.argv[1], shape)
        oracle = SimulatedAnnotator(gt)
        for r in range(state.next_round, shape[0]):
            q = np.zeros(shape, bool)
            q[r] = True
            state.update(r, q, oracle(q))
            print(r, flush=True)
            if r == 2:
                time.sleep(60)  # killed here, between rounds
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    try:
        done = [int(proc.stdout.readline()) for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert done == [0, 1, 2] and proc.returncode == -signal.SIGKILL
    state = AnnotationState.load(str(tmp_path))
    assert [q["round"] for q in state.queries] == [0, 1, 2] and state.next_round == 3
    np.testing.assert_array_equal(state.annotated.any(axis=(1, 2)), [True, True, True, False, False, False])
    np.testing.assert_array_equal(state.labels[:3], _gt()[:3])
    with open(state.queries_path) as f:
        assert [q["voxels"] for q in json.load(f)] == [20, 20, 20]


def test_simulated_annotator_reveals_only_query():
    gt = _gt()
    q = np.zeros(SHAPE, bool)
    q[2, :, 1] = True
    out = SimulatedAnnotator(gt[None])(q[None])
    np.testing.assert_array_equal(out[q], gt[q])
    assert (out[~q] == -1).all()


def test_file_annotator_reads_and_rejects_wrong_shape(tmp_path):
    gt = _gt()
    good = tmp_path / "person.nii.gz"
    nib.save(nib.Nifti1Image(gt, np.eye(4)), str(good))
    q = np.zeros(SHAPE, bool)
    q[:, 0] = True
    out = FileAnnotator(SHAPE)(q, str(good))
    np.testing.assert_array_equal(out[q], gt[q])
    assert (out[~q] == -1).all()

    bad = tmp_path / "wrong.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 3), np.int16), np.eye(4)), str(bad))
    with pytest.raises(ValueError) as err:
        FileAnnotator(SHAPE)(q, str(bad))
    msg = str(err.value)
    assert str(bad) in msg and "(6, 5, 3)" in msg and "(6, 5, 4)" in msg

    npy = tmp_path / "labels.npy"
    np.save(npy, np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="non-integer"):
        FileAnnotator((2, 2)).read(str(npy))
    with pytest.raises(FileNotFoundError, match="missing"):
        FileAnnotator(SHAPE).read(str(tmp_path / "missing.nii.gz"))
