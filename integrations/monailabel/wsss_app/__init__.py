"""Plain-Python parts of the monai_wsss MONAI Label app (importable without ``monailabel``): the bundle contract
check, the datastore-to-dataset folder writer and the per-image scores of the active-learning strategies."""

from .contract import CONTRACT_PARTS, contract_report, infer_overrides, train_overrides
from .datastore import write_dataset_folder
from .predict import BundlePredictor
from .scoring import image_score, query_image
from .training import bundle_train_overrides, trains_from_dataset_dir

__all__ = [
    "BundlePredictor",
    "bundle_train_overrides",
    "trains_from_dataset_dir",
    "CONTRACT_PARTS",
    "contract_report",
    "infer_overrides",
    "train_overrides",
    "write_dataset_folder",
    "image_score",
    "query_image",
]
