"""Finding and reading images: folders, list files, OpenCV's annotation lists, shared data.

The one home of the image suffixes the project reads (:data:`IMAGE_SUFFIXES`), of
reading an image as gray (:func:`read_gray`) and of the shared-data lookup
(:func:`default_data_dir`: ``$VJ_DATA``, else ``../shared/data`` beside the repository).

A *source* is a folder (searched recursively for images) or a text file:

* a background list (``opencv_traincascade -bg``): one image path per line;
* an annotation list (``opencv_createsamples -info``): ``path n x y w h ...``,
  ``n`` object boxes per image.

Relative paths in a list file are relative to the list file's folder, as in
OpenCV. Lines starting with ``#`` and blank lines are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

__all__ = ["IMAGE_SUFFIXES", "default_data_dir", "image_files", "list_images", "read_annotations",
           "read_gray", "read_image", "resolve_data_dir"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".bmp", ".tif", ".tiff", ".ppm", ".webp")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                  and p.is_file())


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The images directly in ``folder`` (not its subfolders), sorted by name.

    Raises
    ------
    ValueError
        If ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"missing data folder {folder}; see the data README for the layout")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                  and p.is_file())


def default_data_dir() -> Path | None:
    """The shared data folder: ``$VJ_DATA``, else ``../shared/data`` beside the repository.

    Returns ``None`` when ``$VJ_DATA`` is unset and no such folder exists.
    """
    env = os.environ.get("VJ_DATA")
    if env:
        return Path(env)
    candidate = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The shared data folder: ``data_dir``, else :func:`default_data_dir`.

    Raises
    ------
    ValueError
        When the folder does not exist.
    """
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if root is None or not root.is_dir():
        raise ValueError(
            f"shared face data folder not found ({root}); pass its path or set VJ_DATA"
        )
    return root


def read_annotations(source: str | os.PathLike) -> list[tuple[Path, np.ndarray]]:
    """Images of a source with their object boxes.

    Parameters
    ----------
    source : path
        A folder (every image is one object filling the image), a path list, or
        an annotation list ``path n x y w h ...``.

    Returns
    -------
    list of (Path, (n, 4) int ndarray or None)
        ``None`` boxes mean "the whole image".

    Raises
    ------
    FileNotFoundError
        If the source, or an image a list names, does not exist.
    ValueError
        For a malformed annotation line (file and line number in the message).
    """
    src = Path(source).expanduser()
    if src.is_dir():
        return [(p, None) for p in _images_in(src)]
    if not src.is_file():
        raise FileNotFoundError(f"image source {src} is neither a folder nor a list file")
    out = []
    for lineno, line in enumerate(src.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        path = Path(parts[0]) if Path(parts[0]).is_absolute() else src.parent / parts[0]
        if not path.is_file():
            raise FileNotFoundError(f"{src}:{lineno}: image {path} not found")
        if len(parts) == 1:
            out.append((path, None))
            continue
        try:
            n = int(parts[1])
            nums = [int(v) for v in parts[2:]]
        except ValueError:
            raise ValueError(
                f"{src}:{lineno}: expected 'path n x y w h ...', got {line!r}") from None
        if n < 0 or len(nums) != 4 * n:
            raise ValueError(f"{src}:{lineno}: {n} boxes need {4 * n} numbers, got {len(nums)}")
        out.append((path, np.asarray(nums, np.int64).reshape(n, 4)))
    return out


def list_images(sources: list[str | os.PathLike]) -> list[Path]:
    """Every image path of the given folders / list files (boxes ignored), in order."""
    paths: list[Path] = []
    for s in sources:
        paths.extend(p for p, _ in read_annotations(s))
    return paths


def _imread(path: str | os.PathLike, flags: int) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} not found")
    img = cv2.imread(str(path), flags)
    if img is None:
        raise ValueError(f"cannot decode image {path}")
    return img


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """An image file as a 2-D uint8 array (colour converted as OpenCV does).

    Raises
    ------
    FileNotFoundError
        If the file is missing; ValueError if OpenCV cannot decode it.
    """
    return _imread(path, cv2.IMREAD_GRAYSCALE)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 (gray, BGR or BGRA); 16-bit images scaled to 8 bits.

    Raises
    ------
    FileNotFoundError
        If the file is missing; ValueError if OpenCV cannot decode it.
    """
    img = _imread(path, cv2.IMREAD_UNCHANGED)
    if img.dtype != np.uint8:  # 16-bit PNG/TIFF, float EXR: scale to 8 bits
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(float(img.max()), 1.0))
    return img
