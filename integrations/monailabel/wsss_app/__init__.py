"""Plain-Python parts of the monai_wsss MONAI Label app (importable without ``monailabel``): the bundle contract
check, the datastore-to-dataset folder writer and the per-image scores of the active-learning strategies."""

from .contract import CONTRACT_PARTS, contract_report, infer_overrides, train_overrides
from .datastore import write_dataset_folder
from .scoring import image_score, query_image

__all__ = [
    "CONTRACT_PARTS",
    "contract_report",
    "infer_overrides",
    "train_overrides",
    "write_dataset_folder",
    "image_score",
    "query_image",
]
