"""The model cache for OpenCV's Haar XMLs: lookup, and a download checked file by file.

No network: the downloads come from an HTTP server on 127.0.0.1 serving files the
tests write, with short timeouts so that nothing hangs.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from functools import partial
from pathlib import Path

import pytest
from vj_apps import models as models_app

import vj
from vj import model_cache
from vj.model_cache import OPENCV_CASCADES, FetchError, fetch_opencv, opencv_xml

GOOD = {"one": b"<opencv_storage>one</opencv_storage>\n",
        "two": b"<opencv_storage>two</opencv_storage>\n"}
BAD = "three"


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """A folder served on 127.0.0.1; yields (folder, base URL, list of requested paths)."""
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}/", requests
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def table(monkeypatch, server, tmp_path):
    """Three cascades in the checksum table; the server has two right and one corrupted."""
    root, _, _ = server
    for name, data in GOOD.items():
        (root / f"haarcascade_{name}.xml").write_bytes(data)
        monkeypatch.setitem(OPENCV_CASCADES, name,
                            (f"haarcascade_{name}.xml", hashlib.sha256(data).hexdigest()))
    expected = b"<opencv_storage>three</opencv_storage>\n"
    (root / "haarcascade_three.xml").write_bytes(expected.replace(b"three", b"thr3e"))
    monkeypatch.setitem(OPENCV_CASCADES, BAD,
                        ("haarcascade_three.xml", hashlib.sha256(expected).hexdigest()))
    monkeypatch.setenv("VJ_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "opencv"


def test_fetch_stores_verified_files_and_refuses_a_corrupted_one(server, table):
    _, url, _ = server
    with pytest.raises(FetchError) as info:
        fetch_opencv(["one", BAD, "two"], base_url=url, timeout=5, progress=False)
    assert len(info.value.problems) == 1
    assert "haarcascade_three.xml" in info.value.problems[0]
    assert "SHA-256" in info.value.problems[0]
    # The good files are stored whole; of the bad one nothing, not even a temporary file.
    assert sorted(p.name for p in table.iterdir()) == ["haarcascade_one.xml",
                                                       "haarcascade_two.xml"]
    for name, data in GOOD.items():
        assert (table / f"haarcascade_{name}.xml").read_bytes() == data


def test_fetch_resumes_without_downloading_again(server, table):
    _, url, requests = server
    assert fetch_opencv(["one"], base_url=url, timeout=5, progress=False) == {"one": "fetched"}
    assert fetch_opencv(["one", "two"], base_url=url, timeout=5,
                        progress=False) == {"one": "present", "two": "fetched"}
    assert requests == ["/haarcascade_one.xml", "/haarcascade_two.xml"]
    # A damaged cache file is fetched again, not trusted.
    (table / "haarcascade_one.xml").write_bytes(b"damaged")
    assert fetch_opencv(["one"], base_url=url, timeout=5, progress=False) == {"one": "fetched"}
    assert (table / "haarcascade_one.xml").read_bytes() == GOOD["one"]


def test_fetch_reports_a_missing_file(server, table):
    root, url, _ = server
    (root / "haarcascade_two.xml").unlink()
    with pytest.raises(FetchError, match="haarcascade_two.xml: cannot download .*404"):
        fetch_opencv(["two"], base_url=url, timeout=5, progress=False)
    assert not table.exists() or not any(table.iterdir())


def test_fetch_times_out_on_a_server_that_never_answers(table):
    with socket.socket() as silent:  # accepts connections (backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        with pytest.raises(FetchError, match="timed out"):
            fetch_opencv(["one"], base_url=url, timeout=0.5, progress=False)
    assert not table.exists() or not any(table.iterdir())


def test_fetch_rejects_bad_arguments(table):
    with pytest.raises(ValueError, match="unknown OpenCV cascades"):
        fetch_opencv(["nose"], progress=False)
    with pytest.raises(ValueError, match="timeout"):
        fetch_opencv(["one"], timeout=0, progress=False)


def test_cli_fetch_list_and_exit_codes(server, table, capsys):
    _, url, _ = server
    assert models_app.main(["fetch", "opencv", "one", "opencv:two", "--url", url,
                            "--timeout", "5", "--quiet"]) == 0
    assert "2 fetched" in capsys.readouterr().err
    assert models_app.main(["fetch", "opencv", BAD, "--url", url, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "haarcascade_three.xml" in err and "vj-models fetch opencv" in err
    assert "Traceback" not in err
    assert models_app.main(["fetch", "opencv", "nose", "--url", url]) == 2
    assert "unknown OpenCV cascades nose" in capsys.readouterr().err
    assert models_app.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in vj.BUILTIN)


def test_table_names_opencvs_17_xmls():
    files = [f for f, _ in OPENCV_CASCADES.values()]
    assert len(OPENCV_CASCADES) == len(set(files)) == 17
    assert all(f.startswith("haarcascade_") and f.endswith(".xml") for f in files)
    assert {"default", "alt", "alt2", "alt_tree", "eye", "smile", "profileface", "fullbody",
            "frontalcatface"} <= set(OPENCV_CASCADES)
    assert {f"opencv:{n}" for n in OPENCV_CASCADES} <= set(vj.BUILTIN)


def test_table_checksums_match_the_opencv4_files():
    folder = model_cache.opencv_install_dir()
    if folder is None or not (folder / "haarcascade_eye.xml").is_file():
        pytest.skip("this OpenCV ships no Haar XMLs")
    assert {p.name for p in folder.glob("haarcascade_*.xml")} == {
        f for f, _ in OPENCV_CASCADES.values()}
    for filename, sha in OPENCV_CASCADES.values():
        assert hashlib.sha256((folder / filename).read_bytes()).hexdigest() == sha, filename


def test_cache_dir_follows_vj_home_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setattr(model_cache.sys, "platform", "linux")
    monkeypatch.setenv("VJ_HOME", str(tmp_path / "h"))
    assert model_cache.opencv_cache_dir() == tmp_path / "h" / "opencv"
    monkeypatch.delenv("VJ_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert model_cache.cache_dir() == tmp_path / "x" / "vj"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert model_cache.cache_dir() == tmp_path / ".cache" / "vj"


def test_lookup_prefers_the_opencv_install_then_the_cache(monkeypatch, tmp_path):
    install, home = tmp_path / "cv2data", tmp_path / "home"
    install.mkdir()
    monkeypatch.setattr(model_cache, "opencv_install_dir", lambda: install)
    monkeypatch.setenv("VJ_HOME", str(home))
    with pytest.raises(FileNotFoundError, match=r"run `vj-models fetch opencv`"):
        opencv_xml("smile")
    with pytest.raises(FileNotFoundError, match=r"vj-models fetch opencv"):
        vj.models.resolve("haarcascade_smile.xml")
    (home / "opencv").mkdir(parents=True)
    (home / "opencv" / "haarcascade_smile.xml").write_text("<cached/>")
    assert opencv_xml("smile") == home / "opencv" / "haarcascade_smile.xml"
    assert vj.models.resolve("opencv:smile") == opencv_xml("smile")
    (install / "haarcascade_smile.xml").write_text("<installed/>")
    assert opencv_xml("smile") == install / "haarcascade_smile.xml"
    with pytest.raises(ValueError, match="no cascade named 'nose'"):
        opencv_xml("nose")


def test_version_is_written_once(tmp_path):
    import importlib.metadata
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "vj", "--version"], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path, check=True).stdout
    assert out.strip() == f"vj-faces {vj.__version__}"
    assert importlib.metadata.version("vj-faces") == vj.__version__
    assert Path(vj.__file__).with_name("__main__.py").is_file()
