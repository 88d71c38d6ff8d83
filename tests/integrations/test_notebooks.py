"""The notebooks of ``notebooks/`` (one per family), executed by papermill with tiny parameters on the conftest's
small real data; the executed copies go to a temporary folder (never committed)."""

from __future__ import annotations

import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOKS = os.path.join(REPO, "notebooks")
papermill = pytest.importorskip("papermill", reason="papermill is in the `test` extra: pip install -e '.[test]'")
nbformat = pytest.importorskip("nbformat")

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _params(name: str, request) -> dict:
    common = {"small": True}
    if name == "semi_supervised":
        return {**common, "dtc_dataset_dir": request.getfixturevalue("tiny_brain_dataset"),
                "cotraining_dataset_dir": request.getfixturevalue("tiny_tissue_dataset"),
                "num_epochs": 1, "epoch_length": 2}  # fmt: skip
    if name == "synthesis":
        return {**common, "dataset_dir": request.getfixturevalue("nuclei_dataset"), "num_epochs": 1,
                "epoch_length": 2, "segment_epochs": 1, "num_pairs": 3}  # fmt: skip
    if name == "active_learning":
        return {**common, "dataset_dir": request.getfixturevalue("tiny_tissue_dataset"), "num_rounds": 2,
                "num_epochs": 1, "epoch_length": 2}  # fmt: skip
    return {**common, "dataset_dir": request.getfixturevalue("small_tagged"), "num_epochs": 1, "epoch_length": 2,
            "segment_epochs": 1}  # fmt: skip


def test_every_notebook_follows_the_tutorial_conventions():
    names = sorted(f for f in os.listdir(NOTEBOOKS) if f.endswith(".ipynb"))
    assert names == ["active_learning.ipynb", "semi_supervised.ipynb", "synthesis.ipynb", "weak_supervision.ipynb"]
    for name in names:
        nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert any(c.source.rstrip().endswith("print_config()") for c in code), f"{name}: no imports cell"
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "num_epochs" in tagged[0].source, f"{name}: one tagged parameters cell"
        assert all(not c.get("outputs") for c in code), f"{name}: committed with outputs"


@pytest.mark.parametrize("name", ["semi_supervised", "synthesis", "active_learning", "weak_supervision"])
def test_notebook_runs(name, tmp_path, request):
    params = {**_params(name, request), "work_dir": str(tmp_path / "work")}
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(
        os.path.join(NOTEBOOKS, f"{name}.ipynb"), str(out), parameters=params, cwd=NOTEBOOKS, kernel_name="python3",
        progress_bar=False, execution_timeout=300,
    )  # fmt: skip
    nb = json.load(open(out))
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    images = [o for c in nb["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{name}: no picture in the executed notebook"
    assert os.listdir(tmp_path / "work")
