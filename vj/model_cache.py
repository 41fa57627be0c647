"""OpenCV's Haar cascade XMLs where OpenCV no longer ships them: lookup and a checked download.

OpenCV 4 ships 17 Haar cascades in ``cv2.data.haarcascades``; OpenCV 5 dropped them,
together with ``CascadeClassifier``. An ``opencv:<name>`` model is looked for

1. in the OpenCV 4 install, when there is one (:func:`opencv_install_dir`);
2. in the local model cache, ``<cache>/opencv/`` (:func:`cache_dir`: ``$VJ_HOME``, else
   the user's cache directory, e.g. ``~/.cache/vj``).

``vj-models fetch opencv`` (:func:`fetch_opencv`) fills the cache from OpenCV's public
GitHub repository at the pinned release tag :data:`OPENCV_TAG`. Every file is checked
against the SHA-256 in :data:`OPENCV_CASCADES` before it is stored, and is stored
atomically, so the cache holds complete, verified files only; a run that was killed
resumes where it stopped (files already verified are not fetched again).

Examples
--------
>>> from vj.model_cache import OPENCV_CASCADES
>>> OPENCV_CASCADES["eye"][0]
'haarcascade_eye.xml'
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from .atomic import atomic_write_bytes

__all__ = ["FETCH_COMMAND", "OPENCV_CASCADES", "OPENCV_TAG", "OPENCV_URL", "FetchError",
           "cache_dir", "fetch_opencv", "find_opencv_xml", "opencv_cache_dir",
           "opencv_install_dir", "opencv_xml"]

#: The OpenCV release the XMLs and their checksums come from (opencv-python 4.14.0.94
#: ships the same files).
OPENCV_TAG = "4.14.0"
#: Where :func:`fetch_opencv` downloads from: raw files of OpenCV's repository at the tag.
OPENCV_URL = f"https://raw.githubusercontent.com/opencv/opencv/{OPENCV_TAG}/data/haarcascades/"
#: The command that fills the cache; named in every "missing" message.
FETCH_COMMAND = "vj-models fetch opencv"
#: Refuse anything larger (the largest XML, ``alt_tree``, is 2.7 MB).
_MAX_BYTES = 16 * 2**20

#: Short name (``opencv:<name>``) -> (file name, SHA-256): OpenCV 4's 17 bundled cascades.
OPENCV_CASCADES: dict[str, tuple[str, str]] = {
    "default": ("haarcascade_frontalface_default.xml",
                "0f7d4527844eb514d4a4948e822da90fbb16a34a0bbbbc6adc6498747a5aafb0"),
    "alt": ("haarcascade_frontalface_alt.xml",
            "6281df13459cc218ff047d02b2ae3859b12ff14a93ffe8952f7b33fad7b9697b"),
    "alt2": ("haarcascade_frontalface_alt2.xml",
             "7b0c967d9abbdfbde025eb9c786947d151b6426040d07a8f9562ed8fd90724b4"),
    "alt_tree": ("haarcascade_frontalface_alt_tree.xml",
                 "0e5ee47ecc13269d54dd7a55f8b53752167c52587720877732388fb078a0480a"),
    "profileface": ("haarcascade_profileface.xml",
                    "b39a4a3be45539db146a7fc1d3e761a292c196eb88421185e6a615b3055e612d"),
    "eye": ("haarcascade_eye.xml",
            "71cc64fc305a355dc60067880f6fbbd43dd155bd63ee3844661a1bda34b2fd8c"),
    "eye_tree_eyeglasses": ("haarcascade_eye_tree_eyeglasses.xml",
                            "e32f9c67935c33e9d1331eb14fa58554ff17835c03742663bcb97a892e936a57"),
    "lefteye_2splits": ("haarcascade_lefteye_2splits.xml",
                        "74c323c78c81475fc9158facbfb866bb0cca06be41f571df47d4ac8d01f9ce4c"),
    "righteye_2splits": ("haarcascade_righteye_2splits.xml",
                         "4cf0d72bea7307e9af7eb99d4acbe15d7101a67c22fcdcfbeefd692ad37cf776"),
    "smile": ("haarcascade_smile.xml",
              "4ca1f304eabd0b5ae30180c81acb53e166a5867e5be17b316bd3f32cfdf87d8a"),
    "fullbody": ("haarcascade_fullbody.xml",
                 "041745c71eef1b5c86aef224f17ce75b042d33314cc8f6757424f8bd8cd30aa1"),
    "upperbody": ("haarcascade_upperbody.xml",
                  "7328ab4fdb1592f53d98d7ea5b1b9d90e01af5d95f212af378c7eb579048bb5f"),
    "lowerbody": ("haarcascade_lowerbody.xml",
                  "1e696e1c7c66c439ae229cfff8871f42037c357e9e1e090a2b59ebc1f8ff5cbb"),
    "frontalcatface": ("haarcascade_frontalcatface.xml",
                       "ac2bac934ef24284ef8a2b2e9d8e57eef84ac1d6943b4d11e5c9e8584dc069c8"),
    "frontalcatface_extended": ("haarcascade_frontalcatface_extended.xml",
                                "ffd0d1d28f07d0376c89db4c9845009c2855cc76c8cff763d5331dc9361da854"),
    "russian_plate_number": ("haarcascade_russian_plate_number.xml",
                             "814cb5954682af570e58361f9e5f8b5b513a4112776bb9ecacef9f0e4ca6c2d7"),
    "license_plate_rus_16stages": (
        "haarcascade_license_plate_rus_16stages.xml",
        "4d1c44bf7a1bc4e204fa25b046ed0acffd7f713cc13fe2958b6977125c60ddea"),
}


class FetchError(OSError):
    """Some files could not be fetched or failed their checksum; none of those was stored.

    Attributes
    ----------
    problems : list of str
        One line per file that was not stored, naming the file and the reason.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def cache_dir() -> Path:
    """The local model cache: ``$VJ_HOME``, else ``vj`` in the user's cache directory.

    The user's cache directory is ``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux,
    ``~/Library/Caches`` on macOS and ``%LOCALAPPDATA%`` on Windows.
    """
    env = os.environ.get("VJ_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
        return Path(base) / "vj" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "vj"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vj"


def opencv_cache_dir() -> Path:
    """Where :func:`fetch_opencv` stores OpenCV's XMLs: ``cache_dir() / "opencv"``."""
    return cache_dir() / "opencv"


def opencv_install_dir() -> Path | None:
    """OpenCV's own folder of Haar XMLs (``cv2.data.haarcascades``), if this OpenCV has one.

    OpenCV 5 may keep the attribute but ships no XMLs there; :func:`find_opencv_xml`
    checks for the file itself.
    """
    try:
        import cv2

        return Path(cv2.data.haarcascades)
    except (ImportError, AttributeError, TypeError):
        return None


def find_opencv_xml(filename: str) -> Path | None:
    """``filename`` in the OpenCV 4 install, else in the model cache; ``None`` if in neither."""
    for folder in (opencv_install_dir(), opencv_cache_dir()):
        if folder is not None and (folder / filename).is_file():
            return folder / filename
    return None


def opencv_xml(name: str) -> Path:
    """The file of OpenCV's cascade ``name`` (a key of :data:`OPENCV_CASCADES`).

    Raises
    ------
    ValueError
        For a name OpenCV never shipped (the message lists the names).
    FileNotFoundError
        When neither the OpenCV install nor the cache has the file; the message names
        the command that fetches it.
    """
    if name not in OPENCV_CASCADES:
        raise ValueError(f"OpenCV ships no cascade named {name!r}; choose from "
                         f"{', '.join(sorted(OPENCV_CASCADES))}")
    filename = OPENCV_CASCADES[name][0]
    path = find_opencv_xml(filename)
    if path is None:
        raise FileNotFoundError(
            f"'opencv:{name}' needs OpenCV's {filename}, which this OpenCV does not ship "
            f"(OpenCV 5 dropped its Haar XMLs) and the model cache {opencv_cache_dir()} "
            f"lacks; run `{FETCH_COMMAND}` to download it"
        )
    return path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data = response.read(_MAX_BYTES + 1)
    if len(data) > _MAX_BYTES:
        raise ValueError(f"{url}: more than {_MAX_BYTES} bytes, not a Haar XML")
    return data


def _fetch_one(name: str, base_url: str, folder: Path, timeout: float) -> str | None:
    """Fetch, check and store one XML; returns a problem line, or None when stored."""
    filename, expected = OPENCV_CASCADES[name]
    url = base_url + filename
    try:
        data = _download(url, timeout)
    except urllib.error.HTTPError as error:
        return f"{filename}: cannot download {url} (HTTP {error.code} {error.reason})"
    except (OSError, ValueError) as error:  # URLError and timeouts are OSErrors
        reason = getattr(error, "reason", None) or error
        return f"{filename}: cannot download {url} ({reason})"
    got = _sha256(data)
    if got != expected:
        return (f"{filename}: SHA-256 {got} from {url} is not the expected {expected} "
                "(refused, nothing stored)")
    atomic_write_bytes(folder / filename, data)
    return None


def fetch_opencv(names: Iterable[str] | None = None, *, base_url: str | None = None,
                 timeout: float = 30.0, progress: bool = True) -> dict[str, str]:
    """Download OpenCV's Haar XMLs into the model cache, each checked against its SHA-256.

    Parameters
    ----------
    names : iterable of str, optional
        Keys of :data:`OPENCV_CASCADES` (default: all 17).
    base_url : str, optional
        Folder URL the file names are appended to (default :data:`OPENCV_URL`); any URL
        ``urllib`` opens, e.g. a mirror or ``file:///.../data/haarcascades/``.
    timeout : float
        Seconds to wait for each connection and read.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict of str to str
        For each name, ``"fetched"`` or ``"present"`` (already in the cache and verified).

    Raises
    ------
    ValueError
        For an unknown name or a timeout that is not positive.
    FetchError
        When some files could not be downloaded or did not match their checksum; the
        others are stored, and the message names each one that was not.
    """
    names = list(OPENCV_CASCADES) if names is None else list(names)
    unknown = [n for n in names if n not in OPENCV_CASCADES]
    if unknown:
        raise ValueError(f"unknown OpenCV cascades {unknown}; choose from "
                         f"{', '.join(sorted(OPENCV_CASCADES))}")
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    base_url = base_url or OPENCV_URL
    if not base_url.endswith("/"):
        base_url += "/"
    from tqdm.auto import tqdm

    folder = opencv_cache_dir()
    status: dict[str, str] = {}
    problems: list[str] = []
    for name in tqdm(names, desc="OpenCV cascades", unit="file", disable=not progress):
        filename, expected = OPENCV_CASCADES[name]
        target = folder / filename
        if target.is_file() and _sha256(target.read_bytes()) == expected:
            status[name] = "present"
            continue
        problem = _fetch_one(name, base_url, folder, timeout)
        if problem is None:
            status[name] = "fetched"
        else:
            problems.append(problem)
    if problems:
        raise FetchError(problems)
    return status
