"""Class probabilities of a monai_wsss bundle on one image file, on the file's own voxel grid (for scoring)."""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.transforms import Invertd, LoadImage

__all__ = ["BundlePredictor"]


class BundlePredictor:
    """The network of a bundle's ``configs/inference.json`` with ``models/model.pt``, run through the bundle's own
    ``preprocessing`` and ``inferer``; the probabilities are inverted back to the input's grid (``Invertd``), so a
    query computed on them is a mask of the image file itself.

    Outputs whose metadata ``value_range`` is ``[0, 1]`` are already probabilities (e.g. an ensemble's soft vote);
    others are logits: softmax over channels, or ``[1 - sigmoid, sigmoid]`` for a one-channel output.

    Args:
        bundle_dir: the bundle folder.
        device: torch device for the network.
        ckpt_path: weights (default ``<bundle_dir>/models/model.pt``), a plain state dict.

    Raises:
        FileNotFoundError: no ``configs/inference.json`` or no weights file.
    """

    def __init__(self, bundle_dir: str, device: str = "cpu", ckpt_path: str | None = None) -> None:
        config = os.path.join(bundle_dir, "configs", "inference.json")
        if not os.path.isfile(config):
            raise FileNotFoundError(f"{config}: missing; the bundle has no inference to score with.")
        ckpt_path = ckpt_path or os.path.join(bundle_dir, "models", "model.pt")
        if not os.path.isfile(ckpt_path):
            raise FileNotFoundError(f"{ckpt_path}: no trained weights; train the bundle first.")
        parser = ConfigParser()
        parser.read_config(config)
        parser.config.update({"bundle_root": os.path.abspath(bundle_dir), "device": device})
        self.device = torch.device(device)
        self.network = parser.get_parsed_content("network_def", instantiate=True).to(self.device)
        state = torch.load(ckpt_path, map_location=self.device, weights_only=True)
        self.network.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        self.network.eval()
        self.preprocessing = parser.get_parsed_content("preprocessing", instantiate=True)
        self.inferer = parser.get_parsed_content("inferer", instantiate=True)
        with open(os.path.join(bundle_dir, "configs", "metadata.json")) as f:
            out = next(iter(json.load(f)["network_data_format"]["outputs"].values()))
        self.outputs_probabilities = list(out.get("value_range") or []) == [0, 1]
        self.loader = LoadImage(image_only=True, ensure_channel_first=True)

    def __call__(self, image_path: str) -> tuple[torch.Tensor, np.ndarray]:
        """``(probabilities (K, *spatial), image (C, *spatial))`` on the grid of ``image_path``."""
        data = self.preprocessing({"image": image_path})
        with torch.no_grad():
            out = self.inferer(torch.as_tensor(data["image"])[None].float().to(self.device), self.network)[0].float()
        if not self.outputs_probabilities:
            out = torch.softmax(out, 0) if out.shape[0] > 1 else torch.cat([1 - torch.sigmoid(out), torch.sigmoid(out)])
        elif out.shape[0] == 1:
            out = torch.cat([1 - out, out])
        data["pred"] = out.cpu()
        data = Invertd(keys="pred", transform=self.preprocessing, orig_keys="image", nearest_interp=False)(data)
        image = np.asarray(self.loader(image_path), dtype=np.float32)
        probs = torch.as_tensor(np.asarray(data["pred"]), dtype=torch.float32)
        if tuple(probs.shape[1:]) != image.shape[1:]:
            raise RuntimeError(f"{image_path}: probabilities {tuple(probs.shape)} do not invert to {image.shape}.")
        return probs, image
