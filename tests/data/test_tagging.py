"""Image-level tags: the default tagged nuclei tiles (real image, tags from real masks) and the tag reader."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from monai.transforms import LoadImage

import monai_wsss.data.default_data as default_data
from monai_wsss.data import (
    TAGGED_NUCLEI_DATASET,
    DatasetError,
    build_tagged_nuclei_dataset,
    load_tagged_datalist,
    parse_class_labels,
)

pytestmark = pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader")


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> str:
    return build_tagged_nuclei_dataset(str(tmp_path_factory.mktemp("tagged")))


def test_tags_follow_the_real_masks_and_regions_are_disjoint(tagged):
    meta = json.load(open(os.path.join(tagged, "dataset.json")))
    assert meta["classes"] == ["nucleus"] and meta["labels"] == {"0": "background", "1": "nucleus"}
    assert len(meta["training"]) == 192 and len(meta["test"]) == 64
    load = LoadImage(image_only=True, ensure_channel_first=True)
    for key in ("training", "test"):
        tags = [i["class_labels"][0] for i in meta[key]]
        assert 0 < sum(tags) < len(tags)  # positives AND negatives
        for item in meta[key][::7]:
            mask = np.asarray(load(os.path.join(tagged, item["label"])))
            assert mask.shape == (1, 32, 32) and set(np.unique(mask)) <= {0, 1}
            assert item["class_labels"] == [int(mask.sum() >= 20)]
    cols = {key: {int(i["image"].split("_c")[1][:3]) for i in meta[key]} for key in ("training", "test")}
    assert max(cols["training"]) + 32 <= 384 <= min(cols["test"])
    assert sum(i["class_labels"][0] for i in meta["training"]) == 145


def test_registered_as_a_default_dataset(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(default_data, "build_tagged_nuclei_dataset", lambda d: calls.append(d) or _stub(d))
    path = default_data.default_dataset_dir(TAGGED_NUCLEI_DATASET, cache_dir=str(tmp_path))
    assert os.path.basename(path) == TAGGED_NUCLEI_DATASET and len(calls) == 1


def _stub(d: str) -> None:
    with open(os.path.join(d, "dataset.json"), "w") as f:
        json.dump({}, f)


def test_loader_gives_multi_hot_arrays(tagged):
    lists = load_tagged_datalist(tagged)
    assert lists["classes"] == ["nucleus"] and len(lists["training"]) == 192 and len(lists["test"]) == 64
    item = lists["training"][0]
    assert os.path.isabs(item["image"]) and os.path.isfile(item["label"])
    assert item["class_labels"].dtype == np.float32 and item["class_labels"].shape == (1,)


def test_class_names_and_multi_hot_are_both_accepted():
    classes = ["cell", "nucleus"]
    assert parse_class_labels(["nucleus"], classes, "f") == [0.0, 1.0]
    assert parse_class_labels([1, 0], classes, "f") == [1.0, 0.0]
    assert parse_class_labels([0, 0], classes, "f") == [0.0, 0.0]  # a negative
    assert parse_class_labels([], [], "f") == []


@pytest.mark.parametrize(
    "tags,message",
    [
        (["tumour"], "class names ['tumour'] are not among the declared classes"),
        ([2], "must hold only 0 or 1"),
        ([1, 0], "one 0/1 entry per declared class"),
        ("nucleus", "must be a list"),
        ([True], "must hold only 0 or 1"),
    ],
)
def test_malformed_tags_name_the_file(tmp_path, tags, message):
    items = [{"image": "a.png", "class_labels": [1]}, {"image": "b.png", "class_labels": tags}]
    (tmp_path / "dataset.json").write_text(json.dumps({"classes": ["nucleus"], "training": items}))
    with pytest.raises(DatasetError, match=re.escape(message)) as info:
        load_tagged_datalist(str(tmp_path))
    assert "dataset.json" in str(info.value) and "b.png" in str(info.value)


def test_class_list_must_match_labels_and_items_need_tags(tmp_path):
    path = tmp_path / "dataset.json"
    items = [{"image": "a.png", "class_labels": [1]}]
    path.write_text(json.dumps({"labels": {"0": "background", "1": "cell"}, "classes": ["nucleus"], "training": items}))
    with pytest.raises(DatasetError, match="does not match the foreground names"):
        load_tagged_datalist(str(tmp_path))
    path.write_text(json.dumps({"labels": {"0": "background", "1": "nucleus"}, "training": [{"image": "a.png"}]}))
    with pytest.raises(DatasetError, match="has no 'class_labels'"):
        load_tagged_datalist(str(tmp_path))
    path.write_text(json.dumps({"training": items}))
    with pytest.raises(DatasetError, match="needs a non-empty 'classes' list"):
        load_tagged_datalist(str(tmp_path))
