"""Finding and reading cascade files: built-in names, OpenCV XMLs and own model files."""

from __future__ import annotations

import os
from pathlib import Path

from .cascade import Cascade
from .model_file import read_model, write_model
from .opencv_xml import CascadeFormatError, read_xml, write_xml

__all__ = ["BUILTIN", "data_dir", "read_cascade", "resolve", "write_cascade"]

#: Built-in names: the project's own models (in ``data/``) and OpenCV's bundled XMLs.
BUILTIN = {
    "frontalface": "frontalface.json",
    "opencv:default": "haarcascade_frontalface_default.xml",
    "opencv:alt": "haarcascade_frontalface_alt.xml",
    "opencv:alt2": "haarcascade_frontalface_alt2.xml",
    "opencv:alt_tree": "haarcascade_frontalface_alt_tree.xml",
}


def data_dir() -> Path:
    """The folder of the shipped models (``$VJ_MODELS`` overrides it)."""
    env = os.environ.get("VJ_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "data"


def _opencv_dir() -> Path | None:
    try:
        import cv2

        return Path(cv2.data.haarcascades)
    except (ImportError, AttributeError):
        return None


def resolve(name_or_path: str | os.PathLike) -> Path:
    """The file behind a built-in name, an OpenCV XML name or a path.

    Raises
    ------
    FileNotFoundError
        Naming what was looked for and where, and the built-in names.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if text in BUILTIN:
        fname = BUILTIN[text]
        if text.startswith("opencv:"):
            base = _opencv_dir()
            if base is None or not (base / fname).is_file():
                raise FileNotFoundError(
                    f"{text!r} needs OpenCV's bundled {fname}, which this OpenCV does not "
                    "ship (OpenCV 5 dropped Haar XMLs); pass the XML's path instead"
                )
            return base / fname
        candidate = data_dir() / fname
        if candidate.is_file():
            return candidate
        raise FileNotFoundError(f"built-in model {text!r} is missing: {candidate} not found")
    base = _opencv_dir()
    if base is not None and os.sep not in text and (base / text).is_file():
        return base / text
    raise FileNotFoundError(
        f"no cascade file or built-in model named {text!r} (built-in names: "
        f"{', '.join(sorted(BUILTIN))})"
    )


def read_cascade(name_or_path: str | os.PathLike) -> Cascade:
    """Read a cascade from a built-in name, an OpenCV Haar XML or an own model file."""
    path = resolve(name_or_path)
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip()
    if head.startswith(b"<"):
        return read_xml(path)
    if head.startswith(b"{"):
        return read_model(path)
    raise CascadeFormatError(f"{path}: neither an OpenCV XML cascade nor a vj JSON model")


def write_cascade(cascade: Cascade, path: str | os.PathLike) -> None:
    """Write ``cascade``: OpenCV XML if ``path`` ends in ``.xml``, else the own format."""
    if os.fspath(path).lower().endswith(".xml"):
        write_xml(cascade, path)
    else:
        write_model(cascade, path)
