"""Checks that run on every file of a datalist before training, so bad input fails early and clearly."""

from __future__ import annotations

import gzip
import json
import os
import warnings
import zlib
from collections.abc import Callable, Sequence

import nibabel as nib
import numpy as np
import pydicom
import torch
from monai.transforms import LoadImage

from monai_wsss.errors import DatasetError

__all__ = [
    "GZIP_MAX_RATIO",
    "DatasetError",
    "check_dicom_series",
    "check_file_integrity",
    "read_datalist",
    "validate_case",
    "validate_datalist",
    "validate_images",
]

GZIP_MAX_RATIO = 1032  # deflate's largest possible expansion (RFC 1951: 258-byte matches in ~2-bit codes)
_CHUNK = 1 << 20
_NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img")


def read_datalist(dataset_dir: str, datalist: str = "dataset.json") -> tuple[str, dict]:
    """
    ``(path, content)`` of a decathlon-style datalist: ``datalist`` is absolute or relative to ``dataset_dir``.

    Raises:
        DatasetError: the file is missing or is not readable JSON; the message names the file.
    """
    path = datalist if os.path.isabs(datalist) else os.path.join(dataset_dir, datalist)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: datalist file not found (expected a decathlon-style dataset.json).")
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable JSON datalist ({e}).") from e
    return path, meta


def _nbytes(shape: Sequence[int], itemsize: int) -> int:
    n = itemsize
    for s in shape:
        n *= int(s)
    return n


def _gunzipped_size(path: str) -> tuple[int | None, str | None]:
    """Decompress ``path`` fully (streamed, constant memory): its size, or the reason it is corrupt."""
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                total += len(chunk)
    except EOFError:
        return None, "the gzip stream is truncated (the file ends before its end-of-stream marker)"
    except gzip.BadGzipFile as e:
        return None, f"the gzip data is corrupt ({e})"
    except zlib.error as e:
        return None, f"the gzip data is corrupt ({e})"
    return total, None


def check_file_integrity(path: str) -> str | None:
    """
    Check a NIfTI file (``.nii`` / ``.nii.gz``) completely before it is loaded, reading the header only and then
    streaming the data without keeping it: the header's data size (``prod(shape) x itemsize`` from ``vox_offset``)
    must be plausible for the file size BEFORE anything is allocated (at most :py:data:`GZIP_MAX_RATIO` times the
    compressed size for ``.nii.gz``, since deflate cannot expand more), the gzip stream must decompress to its end
    with a valid CRC and length (nibabel's lazy proxies stop reading once the array is filled, so a bad CRC or a
    damaged tail is never noticed otherwise), and the (uncompressed) file must hold all the data the header
    promises (a truncated file). Other formats return ``None`` here: their reader reads every byte when the image
    is loaded by :py:func:`validate_case`.

    Returns:
        ``None`` when the file is sound, else one line ``"<path>: <problem>"``.
    """
    low = path.lower()
    if os.path.isdir(path) or not low.endswith((".nii", ".nii.gz")):
        return None
    gz = low.endswith(".gz")
    try:
        img = nib.load(path)  # lazy: reads the header only
        shape = tuple(int(s) for s in img.header.get_data_shape())
        itemsize = img.header.get_data_dtype().itemsize
        offset = int(getattr(img.dataobj, "offset", img.header.get_data_offset()))
    except Exception as e:  # a header nibabel cannot parse: say why when the gzip layer is the cause
        why = _gunzipped_size(path)[1] if gz else None
        if why is not None:
            return f"{path}: cannot be read as an image ({why}); re-copy or re-export the file."
        first_line = str(e).partition("\n")[0][:200]
        return f"{path}: cannot be read as an image (NIfTI header: {type(e).__name__}: {first_line}); re-export it."
    needed = offset + _nbytes(shape, itemsize)
    size = os.path.getsize(path)
    if gz and needed > size * GZIP_MAX_RATIO + _CHUNK:
        return (
            f"{path}: the header claims a {'x'.join(map(str, shape))} volume of {itemsize}-byte voxels "
            f"({needed / 1e9:.3g} GB), impossible for a {size}-byte gzip file (gzip expands at most "
            f"{GZIP_MAX_RATIO}:1); the header is corrupt, re-export the file."
        )
    if gz:
        total, why = _gunzipped_size(path)
        if why is not None:
            return f"{path}: {why}; re-copy or re-export the file."
    else:
        total = size
    if total < needed:
        return (
            f"{path}: truncated: the header promises {needed} bytes of data ({'x'.join(map(str, shape))} voxels of "
            f"{itemsize} bytes from offset {offset}) but the {'decompressed ' if gz else ''}file has {total}; "
            "re-copy or re-export the file."
        )
    return None


def _normal(orientation: Sequence[float]) -> np.ndarray:
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
    return np.cross(row, col)


def check_dicom_series(folder: str, rtol: float = 0.01) -> list[str]:
    """
    Check a DICOM series folder slice by slice before it is loaded (a reader silently drops a slice it cannot
    read and then spaces the others wrongly): every file reads as DICOM with the same ``SeriesInstanceUID``,
    each slice holds its whole uncompressed ``PixelData`` (``Rows x Columns x BitsAllocated / 8 x
    SamplesPerPixel x NumberOfFrames`` bytes), ``InstanceNumber`` runs without gaps or repeats, and the
    slice positions (``ImagePositionPatient`` projected on the normal of ``ImageOrientationPatient``) are evenly
    spaced within ``rtol``.

    Returns:
        one line ``"<file or folder>: <problem>"`` per problem; empty when the series is sound.
    """
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if not f.startswith("."))
    files = [f for f in files if os.path.isfile(f)]
    problems: list[str] = []
    slices = []
    for f in files:
        try:
            ds = pydicom.dcmread(f)
        except Exception as e:  # any parse failure: the file is named
            problems.append(f"{f}: not a readable DICOM file ({type(e).__name__}); re-copy the series.")
            continue
        if "PixelData" not in ds:
            continue  # e.g. a DICOMDIR or a structured report beside the slices
        slices.append((f, ds))
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is not None and getattr(syntax, "is_compressed", False):
            continue  # encapsulated frames: their length is not fixed
        try:
            per_pixel = int(getattr(ds, "SamplesPerPixel", 1)) * int(ds.BitsAllocated) // 8
            expected = _nbytes((ds.Rows, ds.Columns, int(getattr(ds, "NumberOfFrames", 1))), per_pixel)
            got = len(ds.PixelData)
        except Exception as e:
            problems.append(f"{f}: DICOM pixel attributes are unreadable ({type(e).__name__}); re-copy the series.")
            continue
        if got < expected:
            problems.append(
                f"{f}: truncated DICOM slice ({got} of {expected} bytes of pixel data); re-copy the series."
            )
    if not slices:
        return problems or [f"{folder}: no DICOM image slice in the folder."]
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in slices}
    if len(series) > 1:
        problems.append(
            f"{folder}: holds {len(series)} DICOM series (SeriesInstanceUID); put each series in its own folder."
        )
        return problems
    numbers = [getattr(ds, "InstanceNumber", None) for _, ds in slices]
    if all(n is not None for n in numbers) and len(slices) > 1:
        nums = sorted(int(n) for n in numbers)
        repeated = sorted({n for n in nums if nums.count(n) > 1})
        missing = sorted(set(range(nums[0], nums[-1] + 1)) - set(nums))
        if repeated:
            problems.append(f"{folder}: DICOM InstanceNumbers {repeated} occur more than once.")
        if missing:
            problems.append(
                f"{folder}: DICOM series is missing the slices with InstanceNumber {missing} "
                f"(has {len(nums)} slices numbered {nums[0]}..{nums[-1]}); re-copy the whole series."
            )
    try:
        normal = _normal(slices[0][1].ImageOrientationPatient)
        pos = sorted(float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))) for _, ds in slices)
    except Exception:
        return problems  # no geometry to check (e.g. a single-frame secondary capture)
    if len(pos) > 2:
        gaps = np.diff(pos)
        step = float(np.median(gaps))
        if step <= 0 or np.any(np.abs(gaps - step) > rtol * abs(step)):
            problems.append(
                f"{folder}: irregular DICOM slice spacing along the slice normal (gaps from {gaps.min():.4g} to "
                f"{gaps.max():.4g} mm, median {step:.4g}): a slice is missing, repeated or out of the series; "
                "re-copy the whole series."
            )
    return problems


def _load(path: str, loader: LoadImage) -> tuple[torch.Tensor | None, str | None]:
    if not os.path.exists(path):
        return None, f"{path}: file not found."
    err = check_file_integrity(path)
    if err is None and os.path.isdir(path):
        dicom = check_dicom_series(path)
        err = "\n  ".join(dicom) if dicom else None
    if err is not None:
        return None, err
    try:
        return loader(path), None
    except Exception as e:  # any reader failure is reported as one line naming the file
        first_line = str(e).partition("\n")[0][:200]  # str(e) may be empty
        return None, f"{path}: cannot be read as an image ({type(e).__name__}: {first_line})."


def _check_image(path: str, img: torch.Tensor, spatial_dims: int | None, channels: int | None) -> list[str]:
    shape = tuple(img.shape)
    spatial = shape[1:]
    if spatial_dims is not None and len(spatial) != int(spatial_dims):
        extra = " (a 4D image: its last axis is read as channels)" if len(spatial) == 4 else ""
        return [
            f"{path}: a {len(spatial)}D image (shape {spatial}, {shape[0]} channel(s)){extra}, but this bundle's "
            f"network takes {spatial_dims}D images; give {spatial_dims}D files or use a {len(spatial)}D bundle."
        ]
    if channels is not None and shape[0] != int(channels):
        hint = " (a 4D image: its 4th axis is read as channels)" if len(spatial) == 3 and shape[0] > 1 else ""
        return [
            f"{path}: has {shape[0]} channel(s){hint}, but this bundle's network takes {channels}; give images with "
            f"{channels} channel(s) or set the bundle's input channels."
        ]
    t = torch.as_tensor(img)
    if not torch.isfinite(t).all():
        return [f"{path}: image contains NaN or infinite values."]
    if t.numel() and bool((t == t.reshape(-1)[0]).all()):
        warnings.warn(
            f"{path}: the image is constant (every voxel is {float(t.reshape(-1)[0]):g}); check the file.",
            stacklevel=3,
        )
    return []


def validate_case(
    item: dict,
    label_values: Sequence[int] | None = None,
    image_key: str = "image",
    label_key: str = "label",
    affine_atol: float = 1e-3,
    loader: LoadImage | None = None,
    label_transform: Callable | None = None,
    spatial_dims: int | None = None,
    channels: int | None = None,
) -> list[str]:
    """
    Check one datalist item and return its problems (empty when it is fine).

    Checks: each file exists, is sound to its last byte (:py:func:`check_file_integrity`: a plausible header size,
    the whole gzip stream with its CRC, no truncation; :py:func:`check_dicom_series` for a DICOM folder) and is
    readable by MONAI's ``LoadImage`` (NIfTI, NRRD, MHA, DICOM series, ...); the image has ``spatial_dims``
    spatial dimensions and ``channels`` channels when given (what the bundle's network takes: a 2D image given to
    a 3D bundle, the reverse, or a 4D image read as channels are refused), and no NaN/inf; a constant image only
    warns; the label has the image's spatial shape and affine, integer values, and only values from
    ``label_values`` (when given), after ``label_transform`` (e.g. decoding masks stored as grey codes 0/128/255
    into 0/1/2, see :py:class:`monai_wsss.transforms.DecodeLabelCodes`) when given.

    Returns:
        one line ``"<file>: <problem>"`` per problem.
    """
    loader = loader or LoadImage(image_only=True, ensure_channel_first=True)
    problems: list[str] = []
    img_path = item.get(image_key)
    if not isinstance(img_path, str):
        return [f"{item}: case has no '{image_key}' path."]
    img, err = _load(img_path, loader)
    if err:
        problems.append(err)
    else:
        problems += _check_image(img_path, img, spatial_dims, channels)
    lbl_path = item.get(label_key)
    if not lbl_path:
        return problems
    lbl, err = _load(lbl_path, loader)
    if err:
        return problems + [err]
    if label_transform is not None:
        lbl = label_transform(lbl)
    lbl_t = torch.as_tensor(lbl)
    if not torch.isfinite(lbl_t).all() or not torch.equal(lbl_t, torch.round(lbl_t)):
        problems.append(f"{lbl_path}: label has non-integer or non-finite values.")
    elif label_values is not None:
        found = {int(v) for v in torch.unique(lbl_t).tolist()}
        extra = sorted(found - {int(v) for v in label_values})
        if extra:
            problems.append(
                f"{lbl_path}: label values {extra} are not among the declared labels {sorted(label_values)}."
            )
    if img is not None:
        if tuple(img.shape[1:]) != tuple(lbl.shape[1:]):
            problems.append(
                f"{lbl_path}: label shape {tuple(lbl.shape[1:])} differs from image shape {tuple(img.shape[1:])}"
                f" of {img_path}."
            )
        elif not np.allclose(np.asarray(img.affine), np.asarray(lbl.affine), atol=affine_atol):
            problems.append(
                f"{lbl_path}: label affine differs from the affine of {img_path}"
                f" (max difference {np.abs(np.asarray(img.affine) - np.asarray(lbl.affine)).max():.4g})."
            )
    return problems


def validate_datalist(
    items: Sequence[dict],
    label_values: Sequence[int] | None = None,
    image_key: str = "image",
    label_key: str = "label",
    label_transform: Callable | None = None,
    spatial_dims: int | None = None,
    channels: int | None = None,
) -> None:
    """
    Run :py:func:`validate_case` on every item and raise ONE :py:class:`DatasetError` listing every problem,
    one line per file, instead of a traceback from deep inside a transform during training. ``label_transform`` is
    applied to each label before its values are checked; ``spatial_dims`` / ``channels`` are what the bundle's
    network takes.

    Raises:
        DatasetError: any problem; one line per file names the file and the problem.
    """
    loader = LoadImage(image_only=True, ensure_channel_first=True)
    problems = [
        p
        for item in items
        for p in validate_case(
            item,
            label_values,
            image_key,
            label_key,
            loader=loader,
            label_transform=label_transform,
            spatial_dims=spatial_dims,
            channels=channels,
        )
    ]
    if problems:
        n = len(problems)
        raise DatasetError(
            f"{n} problem{'s' if n > 1 else ''} in the dataset:\n  " + "\n  ".join(problems),
            hint="fix the files named above, or remove their cases from the datalist.",
        )


def validate_images(paths: Sequence[str], spatial_dims: int | None = None, channels: int | None = None) -> None:
    """
    Validate the images of an inference list as a training list's (exists, sound to its last byte, readable,
    finite, ``spatial_dims`` / ``channels`` when given).

    Raises:
        DatasetError: any problem; one line per file names the file and the problem.
    """
    validate_datalist([{"image": p} for p in paths], spatial_dims=spatial_dims, channels=channels)
