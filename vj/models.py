"""Finding and reading cascade files: built-in names, OpenCV XMLs and own model files."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .cascade import Cascade
from .model_cache import FETCH_COMMAND, OPENCV_CASCADES, find_opencv_xml, opencv_xml
from .model_file import read_model, write_model
from .opencv_xml import CascadeFormatError, read_xml, write_xml

__all__ = ["BUILTIN", "DEFAULT_MODEL", "FALLBACK_MODEL", "data_dir", "load_default_cascade",
           "read_cascade", "resolve", "write_cascade"]

#: The model every program uses unless told otherwise ...
DEFAULT_MODEL = "frontalface"
#: ... and the one that stands in when it is missing or damaged.
FALLBACK_MODEL = "opencv:default"

#: Built-in names and their files: the project's own model (in ``data/``) and OpenCV 4's
#: 17 bundled XMLs as ``opencv:<name>`` (``default``, ``alt``, ``alt2``, ``alt_tree``,
#: ``eye``, ``smile``, ``profileface``, ``fullbody``, ``frontalcatface``, ...), found in
#: the OpenCV 4 install or the model cache (see :mod:`vj.model_cache`).
BUILTIN = {
    "frontalface": "frontalface.json",
    **{f"opencv:{name}": filename for name, (filename, _) in OPENCV_CASCADES.items()},
}


def data_dir() -> Path:
    """The folder of the shipped models (``$VJ_MODELS`` overrides it).

    The models are the package data of ``vj_data`` (the source folder ``data/``), found
    through :mod:`importlib.resources` so that a checkout, an editable install, a wheel
    and an sdist all resolve them.
    """
    env = os.environ.get("VJ_MODELS")
    if env:
        return Path(env)
    try:
        return Path(str(resources.files("vj_data")))
    except ModuleNotFoundError:  # a bare checkout that was never installed
        return Path(__file__).resolve().parent.parent / "data"


def resolve(name_or_path: str | os.PathLike) -> Path:
    """The file behind a built-in name, an OpenCV XML name or a path.

    ``opencv:<name>`` and bare OpenCV file names (``haarcascade_eye.xml``) are looked
    for in the OpenCV 4 install, then in the model cache that ``vj-models fetch opencv``
    fills (:mod:`vj.model_cache`).

    Raises
    ------
    FileNotFoundError
        Naming what was looked for and where, and the built-in names; for a missing
        OpenCV XML, the command that fetches it.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if text in BUILTIN:
        if text.startswith("opencv:"):
            return opencv_xml(text.removeprefix("opencv:"))
        candidate = data_dir() / BUILTIN[text]
        if candidate.is_file():
            return candidate
        fix = ("point VJ_MODELS at the folder of the shipped models, or unset it"
               if os.environ.get("VJ_MODELS") else "reinstall vj-faces")
        raise FileNotFoundError(f"built-in model {text!r} is missing: {candidate} not found; "
                                f"{fix}")
    if os.sep not in text and text in {f for f, _ in OPENCV_CASCADES.values()}:
        found = find_opencv_xml(text)
        if found is not None:
            return found
        raise FileNotFoundError(f"OpenCV's {text} is in neither the OpenCV install nor the "
                                f"model cache; run `{FETCH_COMMAND}` to download it")
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


def load_default_cascade() -> tuple[Cascade, str, str | None]:
    """The default cascade: :data:`DEFAULT_MODEL`, else :data:`FALLBACK_MODEL`.

    The one place that applies the fallback rule, for every program and pipeline.

    Returns
    -------
    cascade : Cascade
    name : str
        The name of the model actually loaded.
    notice : str or None
        A line for the user when the fallback stood in (why, and what is used instead).

    Raises
    ------
    FileNotFoundError
        When neither model can be read; the message names both problems.
    """
    try:
        return read_cascade(DEFAULT_MODEL), DEFAULT_MODEL, None
    except (FileNotFoundError, CascadeFormatError) as error:
        first = error
    try:
        cascade = read_cascade(FALLBACK_MODEL)
    except (FileNotFoundError, CascadeFormatError) as error:
        raise FileNotFoundError(f"{first}; and the fallback failed too: {error}") from None
    return cascade, FALLBACK_MODEL, f"{first}; using {FALLBACK_MODEL!r} instead"


def write_cascade(cascade: Cascade, path: str | os.PathLike) -> None:
    """Write ``cascade``: OpenCV XML if ``path`` ends in ``.xml``, else the own format."""
    if os.fspath(path).lower().endswith(".xml"):
        write_xml(cascade, path)
    else:
        write_model(cascade, path)
