"""Issue 18, item 4: the active-learning file annotator checks a person's label file (dtype, values against the
classes and the ignore value) BEFORE any cast, naming the file and the bad values; the annotation state records an
answer only once it is valid; a loop rerun after the person fixes the file proceeds."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO, exception_messages
from monai.bundle import ConfigWorkflow

from monai_wsss.active import AnnotationState, FileAnnotator
from monai_wsss.active.state import check_label_values

SHAPE = (6, 5, 4)


def _file(tmp_path, arr: np.ndarray, name: str = "answer.npy") -> str:
    path = str(tmp_path / name)
    if name.endswith(".npy"):
        np.save(path, arr)
    else:
        nib.save(nib.Nifti1Image(arr, np.eye(4)), path)
    return path


def _with(value, dtype) -> np.ndarray:
    arr = np.zeros(SHAPE, dtype)
    arr[1, 2, 3] = value
    arr[0, 0, 0] = 1
    return arr


@pytest.mark.parametrize(
    "value, dtype, name, expected",
    [
        (65535, np.uint16, "a.npy", "65535 (1 voxels)"),  # a cast would make it -1: an unlabelled voxel
        (65537, np.int32, "b.npy", "65537 (1 voxels)"),  # a cast would make it 1: a class
        (-1, np.int16, "c.nii.gz", "-1 (1 voxels)"),  # not the ignore value of this annotator (255)
        (2.5, np.float32, "d.nii.gz", "non-integer label values [2.5] (1 voxels"),
        (3, np.uint8, "e.nii.gz", "3 (1 voxels)"),  # classes are 0, 1, 2
        (np.nan, np.float64, "f.npy", "1 voxels are NaN or infinite"),
    ],
)
def test_bad_label_files_are_refused_naming_file_and_values(tmp_path, value, dtype, name, expected):
    path = _file(tmp_path, _with(value, dtype), name)
    annotator = FileAnnotator(SHAPE, ignore_value=255, num_classes=3)
    with pytest.raises(ValueError) as err:
        annotator.read(path)
    msg = str(err.value)
    assert path in msg and expected in msg, msg
    if "outside" in msg:
        assert "outside the classes 0..2 and the ignore value 255" in msg


def test_valid_files_and_the_ignore_value(tmp_path):
    ann = FileAnnotator(SHAPE, ignore_value=-1, num_classes=3)
    arr = _with(-1, np.int16)  # -1 is this annotator's ignore value: an unlabelled voxel
    arr[2, 2, 2] = 2
    out = ann.read(_file(tmp_path, arr))
    assert out.dtype == np.int16 and out[1, 2, 3] == -1 and out[2, 2, 2] == 2 and out[0, 0, 0] == 1
    as_float = ann.read(_file(tmp_path, arr.astype(np.float32), "f.nii.gz"))  # integral floats are fine
    np.testing.assert_array_equal(as_float, arr)
    as_bool = ann.read(_file(tmp_path, np.ones(SHAPE, bool), "b.npy"))
    assert as_bool.dtype == np.int16 and (as_bool == 1).all()
    # without the classes only the int16 range is checked, still before the cast
    FileAnnotator(SHAPE).read(_file(tmp_path, _with(300, np.int32), "w.npy"))
    with pytest.raises(ValueError, match=r"outside the range of int16 \(-32768..32767\): 65535"):
        FileAnnotator(SHAPE).read(_file(tmp_path, _with(65535, np.uint16), "u.npy"))
    with pytest.raises(ValueError, match="dtype <U1 is not a label dtype"):
        check_label_values(np.array(["a"]), "strings")


def test_state_records_an_answer_only_once_it_is_valid(tmp_path):
    state = AnnotationState(str(tmp_path / "state"), SHAPE, num_classes=3)
    state.save()
    mask = np.zeros(SHAPE, bool)
    mask[:2] = True
    bad = np.where(mask, 1, -1).astype(np.int32)
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"answer to round 0 .*outside the classes 0..2 .*: 7 \(1 voxels\)"):
        state.update(0, mask, bad)
    assert state.queries == [] and state.n_annotated == 0
    reloaded = AnnotationState.load(str(tmp_path / "state"), num_classes=3)
    assert reloaded.queries == [] and reloaded.n_annotated == 0  # nothing reached the files either
    bad[0, 0, 0] = 2
    outside = np.zeros(SHAPE, np.int32) + 9  # values outside the query are not part of the answer
    outside[mask] = bad[mask]
    record = state.update(0, mask, outside)
    assert record["voxels"] == int(mask.sum()) and state.labels[0, 0, 0] == 2 and state.labels[1, 1, 1] == 1
    assert (state.labels[~mask] == -1).all()
    # a state file holding a value outside the classes (written before this check existed) is refused on load
    arr = np.asarray(nib.load(state.labels_path).dataobj).copy()
    arr[5, 4, 3] = 5
    nib.save(nib.Nifti1Image(arr, np.eye(4)), state.labels_path)
    with pytest.raises(ValueError, match=f"annotation state {state.labels_path}: .*5 \\(1 voxels\\)"):
        AnnotationState.load(state.root_dir, num_classes=3)


BUNDLE = os.path.join(REPO, "bundles", "geometric_active_learning")
SMALL = {
    "num_epochs": 1,
    "epoch_length": 2,
    "roi_size": [32, 32, 3],
    "n_segments": 60,
    "regions_per_round": 4,
    "network_channels": [4, 8, 16],
    "device": "cpu",
    "num_rounds": 1,
    "annotator": "file",
    "strategy": {"_target_": "monai_wsss.active.EntropyStrategy"},
}


def _run(tmp: str, dataset_dir: str) -> None:
    configs = os.path.join(BUNDLE, "configs")
    wf = ConfigWorkflow(
        config_file=os.path.join(configs, "train.json"),
        meta_file=os.path.join(configs, "metadata.json"),
        workflow_type="train",
        bundle_root=BUNDLE,
        dataset_dir=dataset_dir,
        output_dir=os.path.join(tmp, "outputs"),
        label_dir=os.path.join(tmp, "person"),
        **SMALL,
    )
    wf.initialize()
    wf.run()
    wf.finalize()


def _queries(tmp: str) -> list[dict]:
    root = os.path.join(tmp, "outputs", "entropy", "state")
    out = []
    for case in sorted(os.listdir(root)):
        with open(os.path.join(root, case, "queries.json")) as f:
            out += json.load(f)
    return out


def test_loop_refuses_a_bad_file_then_proceeds_once_it_is_fixed(tmp_path, tiny_tissue_dataset):
    tmp = str(tmp_path)
    os.makedirs(os.path.join(tmp, "person"))
    _run(tmp, tiny_tissue_dataset)  # no label file yet: the query mask is written and the loop waits
    qdir = os.path.join(tmp, "outputs", "entropy", "queries")
    (query,) = os.listdir(qdir)
    mask = np.asarray(nib.load(os.path.join(qdir, query)).dataobj).astype(bool)
    label_file = os.path.join(tmp, "person", query.replace(".nii.gz", ".npy"))
    answer = np.where(mask, 1, 0).astype(np.uint16)
    answer[np.argwhere(mask)[0][0], np.argwhere(mask)[0][1], np.argwhere(mask)[0][2]] = 65535
    np.save(label_file, answer)
    for _ in range(2):  # refused on every rerun while the file is wrong, and nothing is recorded
        with pytest.raises(Exception) as err:
            _run(tmp, tiny_tissue_dataset)
        chain = exception_messages(err.value)
        assert any(label_file in m and "65535 (1 voxels)" in m and "classes 0..2" in m for m in chain), chain
        assert _queries(tmp) == []
        assert not os.path.isfile(os.path.join(tmp, "outputs", "learning_curve_entropy.csv"))

    answer[answer == 65535] = 2  # the person fixes the file
    np.save(label_file, answer)
    _run(tmp, tiny_tissue_dataset)
    (q,) = _queries(tmp)
    assert q["voxels"] == int(mask.sum())
    labels = np.asarray(nib.load(os.path.join(tmp, "outputs", "entropy", "state", q["case"], "labels.nii.gz")).dataobj)
    assert sorted(np.unique(labels[mask]).tolist()) == [1, 2] and (labels[~mask] == -1).all()
    assert os.path.isfile(os.path.join(tmp, "outputs", "learning_curve_entropy.csv"))
