"""A MONAI Label app serving this project's bundles (inference, training) and its active-learning strategies.

Start it from the project's MONAI Label environment (``make monailabel``)::

    .venv-monailabel/bin/monailabel start_server --app integrations/monailabel --studies /path/to/images \\
        --conf models dtc_semisupervised_seg,geometric_active_learning

``--conf`` keys: ``models`` (comma-separated bundle names under ``bundles_dir``, or ``all``, the default),
``bundles_dir`` (default: this repository's ``bundles/``), ``al_model`` (the bundle whose probabilities the
strategies score; default ``geometric_active_learning`` when served, else the first inference model),
``n_segments`` (supervoxels per image, default 200), ``regions_per_round`` (10), ``voxels_per_round`` (none).

Every bundle with ``configs/inference.json`` and ``models/model.pt`` becomes an inference model, every bundle with
``configs/train.json`` a trainer; each strategy of :py:data:`monai_wsss.apps.active_learning.STRATEGIES` becomes a
MONAI Label strategy ``wsss_<name>`` (plus MONAI Label's own ``random`` and ``first``). The work that does not need
MONAI Label lives in ``wsss_app`` (tested without it: ``tests/integrations/test_monailabel_contract.py``).
"""

from __future__ import annotations

import logging
import os
import sys
import time

APP_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(APP_DIR))
if APP_DIR not in sys.path:
    sys.path.insert(0, APP_DIR)

import json  # noqa: E402

import monailabel  # noqa: E402
import numpy as np  # noqa: E402
from monai.bundle import ConfigParser  # noqa: E402
from monai.transforms import AsDiscreted, Compose, Invertd, SaveImaged, SqueezeDimd  # noqa: E402
from monailabel.interfaces.app import MONAILabelApp  # noqa: E402
from monailabel.interfaces.datastore import Datastore  # noqa: E402
from monailabel.interfaces.tasks.infer_v2 import InferType  # noqa: E402
from monailabel.interfaces.tasks.scoring import ScoringMethod  # noqa: E402
from monailabel.interfaces.tasks.strategy import Strategy  # noqa: E402
from monailabel.tasks.activelearning.first import First  # noqa: E402
from monailabel.tasks.activelearning.random import Random  # noqa: E402
from monailabel.tasks.infer.basic_infer import BasicInferTask  # noqa: E402
from monailabel.tasks.train.bundle import BundleTrainTask  # noqa: E402

try:  # MONAI Label's bundle inference imports torchvision (monailabel.transform.post)
    from monailabel.tasks.infer.bundle import BundleInferTask
    from monailabel.transform.post import Restored

    BUNDLE_INFER_ERROR = None
except Exception as e:  # e.g. a CUDA torchvision beside a CPU torch: "operator torchvision::nms does not exist"
    BundleInferTask, Restored = None, None
    BUNDLE_INFER_ERROR = f"{type(e).__name__}: {e}"
from wsss_app import (  # noqa: E402
    BundlePredictor,
    bundle_train_overrides,
    image_score,
    query_image,
    trains_from_dataset_dir,
    write_dataset_folder,
)

from monai_wsss.apps.active_learning import STRATEGIES  # noqa: E402
from monai_wsss.transforms import Supervoxels  # noqa: E402
from monai_wsss.utils import atomic_write_nifti  # noqa: E402

logger = logging.getLogger(__name__)
SCORE_PREFIX = "wsss_"


def _labels(bundle_dir: str) -> dict[str, str]:
    with open(os.path.join(bundle_dir, "configs", "metadata.json")) as f:
        out = next(iter(json.load(f)["network_data_format"]["outputs"].values()))
    names = {str(k): str(v) for k, v in out.get("channel_def", {}).items()}
    if len(names) == 1:  # a one-channel (sigmoid) output: background is implicit
        names = {"0": "background", "1": next(iter(names.values()))}
    return names if "0" in names else {"0": "background", **names}


class ImagePathSafe:
    """MONAI Label puts the image's path under ``image_path``; MONAI 1.6's ``Spacingd`` updates every ``image_*``
    entry of a NIfTI input as a metadata dict and fails on that string ("'str' object has no attribute 'update'").
    The pre-transforms run without it; it is put back for the writer."""

    def run_pre_transforms(self, data, transforms):
        path = data.pop("image_path", None)
        data = super().run_pre_transforms(data, transforms)
        if path is not None:
            data["image_path"] = path
        return data


def _ensemble_post(pre, key_pred: str, key_image: str) -> list:
    """Post-transforms of a bundle whose ``postprocessing`` is written for an ``EnsembleEvaluator`` (per-member keys
    ``pred_0..``): MONAI Label runs ``network_def`` itself (one soft-vote output under ``pred``), so: the argmax,
    inverted to the input grid."""
    return [
        AsDiscreted(keys=key_pred, argmax=True),
        Invertd(keys=[key_pred, key_image], transform=pre, orig_keys=key_image, nearest_interp=[True, False]),
    ]


def _is_ensemble(bundle_dir: str) -> bool:
    with open(os.path.join(bundle_dir, "configs", "inference.json")) as f:
        return json.load(f).get("evaluator", {}).get("_target_") == "EnsembleEvaluator"


if BundleInferTask is not None:

    class WsssBundleInferTask(ImagePathSafe, BundleInferTask):
        """MONAI Label's bundle inference, with :py:class:`ImagePathSafe`."""

    class EnsembleBundleInferTask(WsssBundleInferTask):
        """MONAI Label's bundle inference with :py:func:`_ensemble_post` and its restore step."""

        def post_transforms(self, data=None):
            pre = self.bundle_config.get_parsed_content("preprocessing", instantiate=True)
            return _ensemble_post(pre, self.key_pred, self.key_image) + [
                Restored(keys=self.key_pred, ref_image=self.key_image)
            ]


class WsssInferTask(ImagePathSafe, BasicInferTask):
    """A bundle's ``configs/inference.json`` served on MONAI Label's basic inference task, used when MONAI Label's
    own bundle inference cannot be imported (its torchvision import fails). Same reading as MONAI Label's: the
    bundle's ``preprocessing``, ``inferer``, ``postprocessing`` less
    ``SaveImaged`` (the bundles' ``Invertd`` restores the input grid), first input / output keys and
    ``channel_def`` labels of the metadata, ``network_def`` with ``models/model.pt``."""

    def __init__(self, path: str, conf: dict) -> None:
        self.bundle_path = path
        self.parser = ConfigParser()
        self.parser.read_config(os.path.join(path, "configs", "inference.json"))
        self.parser.config.update({"bundle_root": path, "device": "cpu"})
        with open(os.path.join(path, "configs", "metadata.json")) as f:
            meta = json.load(f)
        self.key_image, image = next(iter(meta["network_data_format"]["inputs"].items()))
        self.key_pred, pred = next(iter(meta["network_data_format"]["outputs"].items()))
        labels = {v.lower(): int(k) for k, v in pred.get("channel_def", {}).items() if v.lower() != "background"}
        super().__init__(
            path=os.path.join(path, "models", "model.pt"),
            network=self.parser.get_parsed_content("network_def", instantiate=True),
            type=InferType.SEGMENTATION,
            labels=labels,
            dimension=len(image.get("spatial_shape") or [0, 0, 0]),
            description=f"{meta.get('description', '')} (monai_wsss basic task: {BUNDLE_INFER_ERROR})",
            input_key=self.key_image,
            output_label_key=self.key_pred,
        )
        self.ensemble = _is_ensemble(path)

    def _pre(self):
        pre = self.parser.get_parsed_content("preprocessing", instantiate=True)
        return pre if isinstance(pre, Compose) else Compose(pre)

    def pre_transforms(self, data=None):
        return list(self._pre().transforms)  # LoadImaged gives MetaTensors: the writer takes their affine

    def inferer(self, data=None):
        return self.parser.get_parsed_content("inferer", instantiate=True)

    def post_transforms(self, data=None):
        if self.ensemble:
            post = _ensemble_post(self._pre(), self.key_pred, self.key_image)
        else:
            c = self.parser.get_parsed_content("postprocessing", instantiate=True)
            post = [t for t in (c.transforms if isinstance(c, Compose) else c) if not isinstance(t, SaveImaged)]
        return post + [SqueezeDimd(keys=self.key_pred, dim=0)]


class WsssBundleTrainTask(BundleTrainTask):
    """MONAI Label's bundle trainer, with the overrides of :py:func:`wsss_app.bundle_train_overrides`: the
    schedule through ``num_epochs`` / ``epoch_length``, and for bundles that train from a folder (two-stream
    semi-supervised, the active-learning loop) the datastore written as ``dataset.json`` and passed as
    ``dataset_dir`` (labelled images + the unlabelled rest, the second stream)."""

    def __init__(self, path: str, conf: dict) -> None:
        super().__init__(path, conf)
        self._request: dict = {}
        self._dataset_dir: str | None = None

    def config(self):
        c = super().config()
        c.update({"epoch_length": 0, "test_cases": 0})  # 0: the bundle's own epoch_length / no held-out cases
        return c

    def __call__(self, request, datastore: Datastore):
        self._request = {k: v for k, v in request.items() if not (k == "epoch_length" and not v)}
        self._dataset_dir = None
        if trains_from_dataset_dir(self.bundle_path):
            labeled = [{"image": d["image"], "label": d["label"]} for d in datastore.datalist()]
            done = {d["image"] for d in labeled}
            unlabeled = [datastore.get_image_uri(i) for i in datastore.get_unlabeled_images()]
            folder = os.path.join(self.bundle_path, "outputs", "monailabel_dataset")
            test = int(request.get("test_cases", 0) or 0)
            self._dataset_dir = write_dataset_folder(
                folder, labeled, [u for u in unlabeled if u not in done], _labels(self.bundle_path), test
            )
        return super().__call__(request, datastore)

    def _update_overrides(self, overrides):
        new = bundle_train_overrides(overrides, self.bundle_path, self._dataset_dir, self._request)
        overrides.clear()
        overrides.update(new)
        logger.info(f"monai_wsss overrides: {sorted(overrides)}")
        return overrides


class WsssScoring(ScoringMethod):
    """Per-image scores of every monai_wsss strategy (the best available supervoxel score of the image, from the
    ``al_model`` bundle's probabilities), stored in the datastore as ``wsss_<strategy>`` with the weights' time."""

    def __init__(self, bundle_dir: str, strategies: dict, n_segments: int = 200, device: str = "cpu") -> None:
        super().__init__(f"monai_wsss region scores ({', '.join(strategies)}) from {os.path.basename(bundle_dir)}")
        self.bundle_dir, self.strategies, self.device = bundle_dir, strategies, device
        self.supervoxels = Supervoxels(n_segments=n_segments, compactness=0.1)
        self._predictor: BundlePredictor | None = None
        self._stamp = None

    def model_stamp(self) -> float:
        return os.path.getmtime(os.path.join(self.bundle_dir, "models", "model.pt"))

    def predictor(self) -> BundlePredictor:
        if self._predictor is None or self._stamp != self.model_stamp():
            self._predictor, self._stamp = BundlePredictor(self.bundle_dir, self.device), self.model_stamp()
        return self._predictor

    def inputs(self, path: str):
        probs, image = self.predictor()(path)
        lo, hi = float(image.min()), float(image.max())
        regions = np.asarray(self.supervoxels((image - lo) / (hi - lo if hi > lo else 1.0)))[0]
        return probs, image, regions

    def score(self, datastore: Datastore, image_ids) -> int:
        stamp = self.model_stamp()
        for image_id in image_ids:
            probs, image, regions = self.inputs(datastore.get_image_uri(image_id))
            info = {f"{SCORE_PREFIX}model_stamp": stamp}
            for name, strategy in self.strategies.items():
                p = probs if getattr(strategy, "needs_probs", True) else None
                info[SCORE_PREFIX + name] = image_score(strategy, p, regions, image=image, key=image_id)
            datastore.update_image_info(image_id, info)
        return len(image_ids)

    def stale(self, datastore: Datastore, image_ids) -> list:
        stamp = self.model_stamp()
        return [i for i in image_ids if datastore.get_image_info(i).get(f"{SCORE_PREFIX}model_stamp") != stamp]

    def __call__(self, request, datastore: Datastore):
        images = datastore.get_unlabeled_images()
        t0 = time.time()
        n = self.score(datastore, self.stale(datastore, images))
        return {"scored": n, "images": len(images), "seconds": round(time.time() - t0, 2)}


class WsssStrategy(Strategy):
    """``wsss_<name>``: the unlabelled image with the best ``wsss_<name>`` score (scored first where missing or
    older than the weights), and inside it the strategy's query: ``query`` (``region_ids`` or ``plane`` / ``planes``
    with centre, normal and radius, ``voxels``, ``score``) and ``query_mask`` (a NIfTI mask on the image's grid)."""

    def __init__(self, name: str, scoring: WsssScoring, query_dir: str, voxels_per_round=None, regions_per_round=10):
        super().__init__(f"monai_wsss {name} strategy: best image by region score, with its region / plane query")
        self.name, self.scoring, self.query_dir = name, scoring, query_dir
        self.voxels_per_round, self.regions_per_round = voxels_per_round, regions_per_round

    def __call__(self, request, datastore: Datastore):
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        self.scoring.score(datastore, self.scoring.stale(datastore, images))
        key = SCORE_PREFIX + self.name
        best = max(images, key=lambda i: datastore.get_image_info(i).get(key, float("-inf")))
        strategy = self.scoring.strategies[self.name]
        probs, image, regions = self.scoring.inputs(datastore.get_image_uri(best))
        p = probs if getattr(strategy, "needs_probs", True) else None
        mask, fields = query_image(
            strategy, p, regions, image=image, key=best, voxels_per_round=self.voxels_per_round,
            regions_per_round=self.regions_per_round,
        )
        os.makedirs(self.query_dir, exist_ok=True)
        path = os.path.join(self.query_dir, f"{best}_{self.name}.nii.gz")
        affine = self.scoring.predictor().loader(datastore.get_image_uri(best)).affine
        affine = np.asarray(affine) if np.asarray(affine).shape == (4, 4) else None
        atomic_write_nifti(path, mask.astype(np.uint8), affine)
        return {"id": best, "score": datastore.get_image_info(best).get(key), "query": fields, "query_mask": path}


class MyApp(MONAILabelApp):
    """monai_wsss bundles and active-learning strategies behind MONAI Label's REST API."""

    def __init__(self, app_dir, studies, conf):
        self.bundles_dir = os.path.abspath(conf.get("bundles_dir", os.path.join(REPO, "bundles")))
        names = conf.get("models", "all")
        found = sorted(d for d in os.listdir(self.bundles_dir) if os.path.isdir(os.path.join(self.bundles_dir, d)))
        wanted = found if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in found]
        if unknown:
            raise ValueError(f"--conf models: no bundle {unknown} in {self.bundles_dir} (found {found}).")
        self.models = {n: os.path.join(self.bundles_dir, n) for n in wanted}
        self.studies_dir = studies
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="monai_wsss",
            description="Label-efficient segmentation bundles of monai_wsss with region / plane active learning",
            version=monailabel.__version__,
        )

    def init_infers(self):
        infers = {}
        for name, path in self.models.items():
            if not os.path.isfile(os.path.join(path, "configs", "inference.json")):
                logger.info(f"{name}: no configs/inference.json, not served for inference")
                continue
            if not os.path.isfile(os.path.join(path, "models", "model.pt")):
                logger.warning(f"{name}: no models/model.pt yet (train it first), not served for inference")
                continue
            if BundleInferTask is None:
                logger.warning(f"MONAI Label's bundle inference is not importable ({BUNDLE_INFER_ERROR}); {name} is "
                               "served by the monai_wsss basic inference task")
                infers[name] = WsssInferTask(path, self.conf)
                continue
            task = (EnsembleBundleInferTask if _is_ensemble(path) else WsssBundleInferTask)(path, self.conf)
            if task.is_valid():
                infers[name] = task
        return infers

    def init_trainers(self):
        trainers = {}
        for name, path in self.models.items():
            if os.path.isfile(os.path.join(path, "configs", "train.json")):
                task = WsssBundleTrainTask(path, self.conf)
                if task.is_valid():
                    trainers[name] = task
        return trainers

    def _scoring(self) -> WsssScoring | None:
        if getattr(self, "_wsss_scoring", None) is None:
            default = "geometric_active_learning" if "geometric_active_learning" in self.models else None
            al = self.conf.get("al_model") or default
            candidates = [al] if al else list(self.models)
            weights = {n: os.path.join(self.models.get(n, ""), "models", "model.pt") for n in candidates}
            usable = [n for n in candidates if n in self.models and os.path.isfile(weights[n])]
            if not usable:
                logger.warning("no served bundle has models/model.pt: the monai_wsss strategies are not available")
                self._wsss_scoring = None
                return None
            strategies = {name: cls() for name, cls in STRATEGIES.items()}
            n = int(self.conf.get("n_segments", 200))
            self._wsss_scoring = WsssScoring(self.models[usable[0]], strategies, n_segments=n)
        return self._wsss_scoring

    def init_scoring_methods(self):
        scoring = self._scoring()
        return {"wsss_regions": scoring} if scoring else {}

    def init_strategies(self):
        out = {"random": Random(), "first": First()}
        scoring = self._scoring()
        if scoring is None:
            return out
        voxels = self.conf.get("voxels_per_round")
        query_dir = os.path.join(self.studies_dir, ".wsss_queries")
        for name in scoring.strategies:
            out[SCORE_PREFIX + name] = WsssStrategy(
                name, scoring, query_dir, int(voxels) if voxels else None, int(self.conf.get("regions_per_round", 10))
            )
        return out
