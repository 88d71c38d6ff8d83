"""3D Slicer scripted module for monai_wsss: run a bundle on the selected volume, and drive region / planar-patch
active learning (next query, paint it, save it, retrain, learning curve).

All work happens in the runner ``python -m monai_wsss.apps.slicer`` in a separate process (Slicer's own Python does
not have monai_wsss); :class:`MONAIWSSSLogic` builds its commands and reads its JSON answers, and is plain Python
(imported and tested without Slicer: ``tests/integrations/test_slicer_logic.py``). The few Slicer-only steps
(export a volume, load a segmentation with names, reformat a slice view, export the painted segments) are the
``*Node`` methods of the logic, and the widget only wires the UI to them.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile

try:  # inside Slicer
    import ctk
    import qt
    import slicer
    import vtk
    from slicer.ScriptedLoadableModule import (
        ScriptedLoadableModule,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
        ScriptedLoadableModuleWidget,
    )
except ImportError:  # plain Python (tests, other tools): the logic works, the widget is unavailable
    ctk = qt = slicer = vtk = None

    class ScriptedLoadableModule:  # noqa: D101
        def __init__(self, parent=None):
            self.parent = parent

    class ScriptedLoadableModuleWidget:  # noqa: D101
        def __init__(self, parent=None):
            self.parent = parent

    class ScriptedLoadableModuleLogic:  # noqa: D101
        def __init__(self):
            pass

    class ScriptedLoadableModuleTest:  # noqa: D101
        pass


RUNNER = "monai_wsss.apps.slicer"
REPO_GUESS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


class MONAIWSSS(ScriptedLoadableModule):
    """Module description for Slicer's module list."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        if parent is None:
            return
        self.parent.title = "MONAI WSSS"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["monai_wsss contributors"]
        self.parent.helpText = (
            "Runs a monai_wsss MONAI bundle on the selected volume (in a separate Python process) and loads the "
            "result as a segmentation named from the bundle's channel_def; drives the geometric active-learning "
            "bundle: next query (supervoxels or a planar patch), paint it in the Segment Editor, save, retrain, "
            "learning curve."
        )
        self.parent.acknowledgementText = "Built on MONAI bundles (https://monai.io)."


def _default_python() -> str:
    env = os.environ.get("MONAI_WSSS_PYTHON")
    if env:
        return env
    venv = os.path.join(REPO_GUESS, ".venv", "bin", "python")
    return venv if os.path.isfile(venv) else "python3"


class MONAIWSSSLogic(ScriptedLoadableModuleLogic):
    """Commands of the runner and their answers; the ``*Node`` methods are the Slicer-only steps.

    Args:
        python: the Python that has monai_wsss installed (default: ``$MONAI_WSSS_PYTHON``, else the repository's
            ``.venv/bin/python`` beside this module, else ``python3``).
        timeout: seconds a runner command may take.
    """

    def __init__(self, python: str | None = None, timeout: float = 3600.0):
        ScriptedLoadableModuleLogic.__init__(self)
        self.python = python or _default_python()
        self.timeout = float(timeout)

    # ---- the runner (plain Python) ------------------------------------------------------------------------------
    def command(self, *args: str) -> list[str]:
        """The runner's command line for ``args``."""
        return [self.python, "-m", RUNNER, *[str(a) for a in args]]

    def run(self, *args: str) -> dict:
        """Run the runner and return its JSON answer (the last line it prints).

        Raises:
            RuntimeError: the runner failed; the message is its ``error: ...`` line (or the end of its output).
        """
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) - 1)))
        proc = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=self.timeout, env=env)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error: ")]
            raise RuntimeError(lines[-1][len("error: ") :] if lines else proc.stderr.strip()[-2000:])
        lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"the runner printed no result:\n{proc.stdout[-2000:]}")
        return json.loads(lines[-1])

    @staticmethod
    def bundles(bundles_dir: str) -> list[str]:
        """Bundle folders under ``bundles_dir`` that have a ``configs/inference.json``."""
        if not os.path.isdir(bundles_dir):
            return []
        names = sorted(os.listdir(bundles_dir))
        return [os.path.join(bundles_dir, n) for n in names if os.path.isfile(os.path.join(bundles_dir, n, "configs", "inference.json"))]  # noqa: E501

    def infer(self, bundle: str, image: str, output: str, device: str = "cpu") -> dict:
        """Run ``bundle`` on an image file: ``{"segmentation": path, "segments": [{"value", "name"}], ...}``."""
        return self.run("infer", "--bundle", bundle, "--image", image, "--output", output, "--device", device)

    def _al(self, step: str, bundle: str, dataset_dir: str, work_dir: str, strategy: str | None, device: str,
            settings: dict | None, *extra: str) -> dict:  # fmt: skip
        args = ["al", step, "--bundle", bundle, "--dataset_dir", dataset_dir, "--work_dir", work_dir]
        args += ["--device", device] + (["--strategy", strategy] if strategy else [])
        args += [f"--set={k}={json.dumps(v)}" for k, v in (settings or {}).items()]
        return self.run(*args, *extra)

    def next_query(self, bundle, dataset_dir, work_dir, strategy=None, device="cpu", settings=None) -> dict:
        """The next query of the session (``round``, ``case``, ``image``, ``query_mask``, ``label_path``,
        ``plane_ras`` for planar patches, ...)."""
        return self._al("query", bundle, dataset_dir, work_dir, strategy, device, settings)

    def save_label(self, bundle, dataset_dir, work_dir, label, strategy=None, device="cpu", settings=None) -> dict:
        """Save the painted label file of the pending query through the file annotator."""
        return self._al("save-label", bundle, dataset_dir, work_dir, strategy, device, settings, "--label", label)

    def retrain(self, bundle, dataset_dir, work_dir, strategy=None, device="cpu", settings=None) -> dict:
        """One retraining round; returns the learning curve (``csv``, ``png``, ``rows``)."""
        return self._al("train", bundle, dataset_dir, work_dir, strategy, device, settings)

    def learning_curve(self, bundle, dataset_dir, work_dir, strategy=None, device="cpu", settings=None) -> dict:
        """The learning curve of the session (``csv``, ``png`` or None, ``rows``)."""
        return self._al("curve", bundle, dataset_dir, work_dir, strategy, device, settings)

    @staticmethod
    def slice_to_ras(center, normal) -> list[list[float]]:
        """A 4x4 slice-to-RAS matrix whose slice plane is the query's plane: columns x, y (in the plane), the unit
        normal, and the centre. ``x`` is the direction of the plane closest to RAS right (or anterior when the
        normal is left-right).

        Raises:
            ValueError: the centre or normal is not 3D, or the normal is zero.
        """
        n = [float(v) for v in normal]
        norm = math.sqrt(sum(v * v for v in n))
        if len(n) != 3 or len(center) != 3 or norm == 0:
            raise ValueError(f"need a 3D centre and a non-zero 3D normal, got {list(center)}, {list(normal)}.")
        n = [v / norm for v in n]
        ref = [1.0, 0.0, 0.0] if abs(n[0]) < 0.9 else [0.0, 1.0, 0.0]
        d = sum(a * b for a, b in zip(ref, n, strict=True))
        x = [r - d * c for r, c in zip(ref, n, strict=True)]
        xn = math.sqrt(sum(v * v for v in x))
        x = [v / xn for v in x]
        y = [n[1] * x[2] - n[2] * x[1], n[2] * x[0] - n[0] * x[2], n[0] * x[1] - n[1] * x[0]]
        c = [float(v) for v in center]
        return [[x[i], y[i], n[i], c[i]] for i in range(3)] + [[0.0, 0.0, 0.0, 1.0]]

    # ---- Slicer-only steps ---------------------------------------------------------------------------------------
    @staticmethod
    def _need_slicer():
        if slicer is None:
            raise RuntimeError("this step needs 3D Slicer (run the module inside Slicer).")

    def exportVolumeNode(self, volumeNode, folder: str) -> str:
        """Write the selected volume as NIfTI for the runner; returns the path."""
        self._need_slicer()
        path = os.path.join(folder, f"{volumeNode.GetName() or 'volume'}.nii.gz")
        if not slicer.util.saveNode(volumeNode, path):
            raise RuntimeError(f"Slicer could not write {path}.")
        return path

    def loadSegmentationNode(self, path: str, segments: list[dict], name: str):
        """Load a label map as a segmentation whose segment names come from ``segments`` (value -> name)."""
        self._need_slicer()
        label = slicer.util.loadLabelVolume(path)
        colors = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLColorTableNode", f"{name} colours")
        colors.SetTypeToUser()
        top = max([s["value"] for s in segments] + [1])
        colors.SetNumberOfColors(top + 1)
        colors.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
        for i, s in enumerate(segments):
            r, g, b = [((i * 97 + k * 53) % 200 + 55) / 255.0 for k in (1, 2, 3)]
            colors.SetColor(int(s["value"]), s["name"], r, g, b, 1.0)
        label.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())
        seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(label, seg)
        slicer.mrmlScene.RemoveNode(label)
        return seg

    def showPlaneInSliceView(self, plane_ras: dict, view: str = "Red") -> None:
        """Reformat a slice view to the query's plane."""
        self._need_slicer()
        m = self.slice_to_ras(plane_ras["center"], plane_ras["normal"])
        node = slicer.app.layoutManager().sliceWidget(view).mrmlSliceNode()
        node.SetSliceToRASByNTP(m[0][2], m[1][2], m[2][2], m[0][0], m[1][0], m[2][0], m[0][3], m[1][3], m[2][3], 0)

    def exportPaintedLabel(self, segmentationNode, referenceVolume, segments: list[dict], path: str) -> str:
        """Write the painted segments as a label map on the reference volume's grid, each segment with the value of
        the class whose name it has (unpainted voxels of the query are background, value 0)."""
        self._need_slicer()
        colors = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLColorTableNode", "monai_wsss classes")
        colors.SetTypeToUser()
        colors.SetNumberOfColors(max([s["value"] for s in segments] + [1]) + 1)
        colors.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
        for s in segments:
            colors.SetColor(int(s["value"]), s["name"], 1.0, 1.0, 1.0, 1.0)
        label = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        ids = vtk.vtkStringArray()
        segmentationNode.GetSegmentation().GetSegmentIDs(ids)
        slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(
            segmentationNode, ids, label, referenceVolume, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, colors
        )
        ok = slicer.util.saveNode(label, path)
        slicer.mrmlScene.RemoveNode(label)
        slicer.mrmlScene.RemoveNode(colors)
        if not ok:
            raise RuntimeError(f"Slicer could not write {path}.")
        return path


class MONAIWSSSWidget(ScriptedLoadableModuleWidget):
    """The module's panel: it only wires the UI to :class:`MONAIWSSSLogic`."""

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = MONAIWSSSLogic()
        self.query = None
        self.session = {}
        form = qt.QFormLayout()
        box = ctk.ctkCollapsibleButton()
        box.text = "Run a bundle"
        box.setLayout(form)
        self.layout.addWidget(box)
        self.python = ctk.ctkPathLineEdit()
        self.python.currentPath = self.logic.python
        form.addRow("monai_wsss Python:", self.python)
        self.bundle = ctk.ctkPathLineEdit()
        self.bundle.filters = ctk.ctkPathLineEdit.Dirs
        form.addRow("Bundle folder:", self.bundle)
        self.volume = slicer.qMRMLNodeComboBox()
        self.volume.nodeTypes = ["vtkMRMLScalarVolumeNode"]
        self.volume.setMRMLScene(slicer.mrmlScene)
        form.addRow("Input volume:", self.volume)
        self.device = qt.QComboBox()
        self.device.addItems(["cpu", "cuda"])
        form.addRow("Device:", self.device)
        run = qt.QPushButton("Segment")
        run.connect("clicked(bool)", self.onSegment)
        form.addRow(run)

        al_form = qt.QFormLayout()
        al = ctk.ctkCollapsibleButton()
        al.text = "Active learning"
        al.setLayout(al_form)
        self.layout.addWidget(al)
        self.al_bundle = ctk.ctkPathLineEdit()
        self.al_bundle.filters = ctk.ctkPathLineEdit.Dirs
        al_form.addRow("Active-learning bundle:", self.al_bundle)
        self.dataset = ctk.ctkPathLineEdit()
        self.dataset.filters = ctk.ctkPathLineEdit.Dirs
        al_form.addRow("Dataset folder:", self.dataset)
        self.work = ctk.ctkPathLineEdit()
        self.work.filters = ctk.ctkPathLineEdit.Dirs
        al_form.addRow("Session folder:", self.work)
        self.strategy = qt.QComboBox()
        self.strategy.addItems(["geometric_plane", "geometric", "entropy", "margin", "pairwise_entropy", "random"])
        al_form.addRow("Strategy:", self.strategy)
        for text, slot in (("Next query", self.onQuery), ("Save label", self.onSave), ("Retrain", self.onRetrain)):
            b = qt.QPushButton(text)
            b.connect("clicked(bool)", slot)
            al_form.addRow(b)
        self.status = qt.QLabel("")
        self.status.wordWrap = True
        al_form.addRow(self.status)
        self.curve = qt.QLabel()
        al_form.addRow(self.curve)
        self.layout.addStretch(1)

    def _args(self):
        self.logic.python = self.python.currentPath or self.logic.python
        return (self.al_bundle.currentPath, self.dataset.currentPath, self.work.currentPath,
                self.strategy.currentText, self.device.currentText)  # fmt: skip

    def _guard(self, fn):
        try:
            with slicer.util.tryWithErrorDisplay("monai_wsss runner failed", waitCursor=True):
                fn()
        except Exception:  # shown by tryWithErrorDisplay
            pass

    def onSegment(self):
        def go():
            self.logic.python = self.python.currentPath or self.logic.python
            node = self.volume.currentNode()
            if node is None:
                raise ValueError("select an input volume first.")
            tmp = tempfile.mkdtemp(prefix="monai_wsss_")
            image = self.logic.exportVolumeNode(node, tmp)
            result = self.logic.infer(self.bundle.currentPath, image, os.path.join(tmp, "out"), self.device.currentText)
            name = f"{node.GetName()} {os.path.basename(os.path.normpath(self.bundle.currentPath))}"
            self.logic.loadSegmentationNode(result["segmentation"], result["segments"], name)

        self._guard(go)

    def onQuery(self):
        def go():
            q = self.logic.next_query(*self._args())
            if q.get("trained"):
                self._show_curve(q)
                return
            self.query = q
            self.session = {"image": slicer.util.loadVolume(q["image"])}
            segments = [{"value": 1, "name": f"query round {q['round']}"}]
            self.logic.loadSegmentationNode(q["query_mask"], segments, f"query round {q['round']}")
            painted = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"labels round {q['round']}")
            painted.SetReferenceImageGeometryParameterFromVolumeNode(self.session["image"])
            self.session["painted"] = painted
            if q.get("plane_ras"):
                self.logic.showPlaneInSliceView(q["plane_ras"])
            self.status.text = (
                f"Round {q['round']}: paint the {q['voxels']} queried voxels of {q['case']} in the Segment Editor "
                f"(segment names = class names; unpainted query voxels count as background), then Save label."
            )
            slicer.util.selectModule("SegmentEditor")

        self._guard(go)

    def onSave(self):
        def go():
            if not self.query:
                raise ValueError("ask for a query first.")
            with open(os.path.join(self.al_bundle.currentPath, "configs", "metadata.json")) as f:
                out = next(iter(json.load(f)["network_data_format"]["outputs"].values()))
            segments = [{"value": int(k), "name": v} for k, v in out["channel_def"].items() if int(k) != 0]
            path = os.path.join(tempfile.mkdtemp(prefix="monai_wsss_"), "painted.nii.gz")
            self.logic.exportPaintedLabel(self.session["painted"], self.session["image"], segments, path)
            saved = self.logic.save_label(*self._args()[:3], path, *self._args()[3:])
            self.status.text = f"Saved round {saved['round']}: {saved['counts']} (class: voxels). Now Retrain."

        self._guard(go)

    def onRetrain(self):
        self._guard(lambda: self._show_curve(self.logic.retrain(*self._args())))

    def _show_curve(self, curve):
        rows = curve.get("rows") or []
        if rows:
            self.status.text = f"Round {rows[-1]['round']}: Dice {float(rows[-1]['dice']):.3f}. Ask the next query."
        if curve.get("png"):
            self.curve.setPixmap(qt.QPixmap(curve["png"]).scaledToWidth(360))


class MONAIWSSSTest(ScriptedLoadableModuleTest):
    """Slicer's self-test of the module (Reload and Test): the plane reformat and the runner's reachability."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_slice_to_ras()
        self.test_runner_reachable()

    def test_slice_to_ras(self):
        m = MONAIWSSSLogic.slice_to_ras([1.0, 2.0, 3.0], [0.0, 0.0, 2.0])
        assert [row[2] for row in m[:3]] == [0.0, 0.0, 1.0] and [row[3] for row in m[:3]] == [1.0, 2.0, 3.0]

    def test_runner_reachable(self):
        logic = MONAIWSSSLogic()
        proc = subprocess.run(logic.command("--help"), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{logic.python} cannot run {RUNNER}: {proc.stderr[-500:]}"
