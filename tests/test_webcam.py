"""Tests of ``vj-webcam``: real runs on the demo, files and fake cameras, and a real window."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from vj_apps.webcam import cli as webcam
from vj_apps.webcam import sources as webcam_sources
from vj_apps.webcam.demo import DEMO_CYCLE_FRAMES, DEMO_SIZE, demo_frame
from vj_apps.webcam.detectors import DetectorSwitch
from vj_apps.webcam.errors import CameraUnavailable, SourceLost
from vj_apps.webcam.loop import Settings, run
from vj_apps.webcam.output import VideoWriter
from vj_apps.webcam.overlay import STAGE_COLOURS, Hud, draw_detections, draw_hud
from vj_apps.webcam.sources import CameraSource, DemoSource, FrameSource

from vj.stats import DetectionStats, StageStats

REPO = Path(__file__).resolve().parent.parent
GREEN = STAGE_COLOURS[0]
# The status panel's colour key per stage is a filled square of about 10x10 pixels.
LEGEND_PIXELS = 121


def count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    """Frames OpenCV can decode from ``path``, and their (width, height)."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"{path} does not re-open"
    n, size = 0, (0, 0)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        n, size = n + 1, (frame.shape[1], frame.shape[0])
    capture.release()
    return n, size


def colour_pixels(image_bgr: np.ndarray, colour: tuple[int, int, int], tol: int = 0) -> int:
    diff = np.abs(image_bgr.astype(np.int16) - np.array(colour, np.int16))
    return int((diff.max(axis=-1) <= tol).sum())


def stage_pixels(image_bgr: np.ndarray, tol: int = 0) -> int:
    """Pixels in the colour of the cascade or of a verifier stage (boxes, legend keys)."""
    return sum(colour_pixels(image_bgr, c, tol) for c in STAGE_COLOURS[:3])


class FakeDetector:
    """Finds one fixed box; stands in for the cascade where detection itself is not tested."""

    def __init__(self) -> None:
        self.last_stats = DetectionStats(windows=100, ms=1.0,
                                         stages=[StageStats("cascade", 99, 1.0)])

    def detect(self, image, scale_factor=1.1, min_neighbors=3, min_size=None, max_size=None,
               return_scores=False):
        boxes = np.array([[50, 60, 80, 80]], np.int32)
        self.last_stats.box_stage = np.zeros(1, np.intp)
        return (boxes, np.array([5.0], np.float32)) if return_scores else boxes


class ListSource(FrameSource):
    """Demo frames from a list; raises ``error`` once the list is used up, if given."""

    name = "list"
    fps = 30.0

    def __init__(self, n: int, error: BaseException | None = None) -> None:
        super().__init__()
        self.frames = [demo_frame(i) for i in range(n)]
        self.error = error
        self.closed = False

    def read(self):
        if self.frames:
            return self.frames.pop(0)
        if self.error is not None:
            raise self.error
        return None

    def close(self) -> None:
        self.closed = True


# ----------------------------------------------------------------- whole runs


def test_demo_headless_writes_video_and_json(tmp_path, capsys):
    video, jsonl = tmp_path / "demo.mp4", tmp_path / "demo.jsonl"
    rc = webcam.main(["--source", "demo", "--no-window", "--output", str(video),
                      "--json", str(jsonl), "--max-frames", "12"])
    assert rc == 0
    assert count_frames(video) == (12, DEMO_SIZE)
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(12))
    # The zoomed-out start of the demo shows seven faces; the cascade finds most of them.
    assert all(len(r["boxes"]) >= 1 for r in records)
    assert sum(len(r["boxes"]) for r in records) >= 3 * len(records)
    assert all(len(box) == 5 and box[2] >= 40 for r in records for box in r["boxes"])
    assert all(r["stages"][0]["name"] == "cascade" and r["ms"] > 0 for r in records)
    out = capsys.readouterr().out
    assert "frames: 12 processed" in out and "median FPS" in out and "cascade: decided" in out
    # Boxes are drawn into the video (colours survive MPEG-4 only approximately);
    # more than the status panel's 10x10 colour key alone.
    capture = cv2.VideoCapture(str(video))
    _, first = capture.read()
    # With verification on (the default), three stages and their keys; boxes take the
    # colour of the stage that accepted them.
    assert stage_pixels(first, tol=60) > 3 * LEGEND_PIXELS + 300


def test_default_source_falls_back_to_demo_without_camera(monkeypatch, capsys):
    def no_camera(index, **kwargs):
        raise CameraUnavailable(f"could not open camera {index}")

    monkeypatch.setattr(webcam_sources, "CameraSource", no_camera)
    assert webcam.main(["--no-window", "--max-frames", "2"]) == 0
    captured = capsys.readouterr()
    assert "running the built-in demo instead" in captured.err
    assert "source: demo" in captured.out


def test_explicit_missing_camera_is_a_clear_error(capsys):
    assert webcam.main(["--source", "97", "--no-window"]) == 2
    assert "could not open camera 97" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--source", "no/such/video.mp4"], "no such file or folder"),
        (["--source", "demo", "--output", "out.xyz"], "cannot write video"),
        (["--source", "demo", "--cascade", "no-such-cascade"], "cannot load cascade"),
    ],
)
def test_bad_arguments_fail_with_a_message(argv, message, capsys):
    assert webcam.main([*argv, "--no-window"]) == 2
    assert message in capsys.readouterr().err


def test_output_that_fails_mid_run_ends_with_a_message(capsys):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    assert webcam.main(["--source", "demo", "--no-window", "--json", "/dev/full"]) == 2
    captured = capsys.readouterr()
    assert "error: cannot write /dev/full" in captured.err
    assert "frames: 0 processed" in captured.out


def test_verification_is_on_by_default(tmp_path, capsys):
    jsonl = tmp_path / "frames.jsonl"
    assert webcam.main(["--source", "demo", "--no-window", "--max-frames", "3",
                        "--json", str(jsonl)]) == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [s["name"] for s in records[0]["stages"]] == ["cascade", "tiny", "skipnet"]
    assert all(r["boxes"] for r in records)
    assert "tiny: decided" in capsys.readouterr().out
    assert webcam.main(["--source", "demo", "--no-window", "--max-frames", "1", "--no-verify",
                        "--json", str(jsonl)]) == 0
    record = json.loads(jsonl.read_text().splitlines()[0])
    assert [s["name"] for s in record["stages"]] == ["cascade"]


def test_missing_verifier_files(monkeypatch, tmp_path, capsys):
    # The cascade is found, the verifier's weights are not.
    shutil.copy(REPO / "data" / "frontalface.json", tmp_path)
    monkeypatch.setenv("VJ_MODELS", str(tmp_path))
    assert webcam.main(["--verify", "--source", "demo", "--no-window"]) == 2
    err = capsys.readouterr().err
    assert "cannot load the neural verifier" in err and "verifier_" in err
    # Without --verify the app says so and runs the cascade alone.
    assert webcam.main(["--source", "demo", "--no-window", "--max-frames", "1"]) == 0
    assert "running the cascade alone" in capsys.readouterr().err


def test_without_a_display_it_runs_headless(monkeypatch, capsys):
    if not sys.platform.startswith("linux"):
        pytest.skip("the display check applies to Linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert webcam.main(["--source", "demo", "--max-frames", "2"]) == 0
    captured = capsys.readouterr()
    assert "running headless" in captured.err
    assert "frames: 2 processed" in captured.out


def test_image_folder_skips_and_counts_unreadable_files(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), demo_frame(0))
    (folder / "b.png").write_bytes(b"not an image")
    cv2.imwrite(str(folder / "c.jpg"), cv2.resize(demo_frame(5), (320, 240)))
    jsonl, video = tmp_path / "out.jsonl", tmp_path / "out.avi"
    rc = webcam.main(["--source", str(folder), "--no-window", "--json", str(jsonl),
                      "--output", str(video)])
    assert rc == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["image"] for r in records] == ["a.png", "c.jpg"]
    assert "2 processed, 1 unreadable skipped" in capsys.readouterr().out
    # The smaller second image is letterboxed into the first one's size.
    assert count_frames(video) == (2, DEMO_SIZE)


def test_video_file_source_plays_to_the_end(tmp_path, capsys):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, DEMO_SIZE)
    for i in range(8):
        writer.write(demo_frame(i))
    writer.release()
    assert webcam.main(["--source", str(clip), "--no-window"]) == 0
    assert "frames: 8 processed, 0 unreadable" in capsys.readouterr().out


def test_command_line_errors_have_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "vj_apps.webcam", "--source", "does-not-exist", "--no-window"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("vj-webcam: error: no such file")


# ----------------------------------------------------------------- the loop


class ScriptedWindow:
    """Stands in for the highgui window: presses the given keys, one per frame."""

    def __init__(self, actions: list[str | None]) -> None:
        self.actions = list(actions)
        self.shown: list[np.ndarray] = []
        self.closed = False

    def show(self, frame: np.ndarray) -> None:
        self.shown.append(frame.copy())

    def poll(self, delay_ms: int) -> str | None:
        return self.actions.pop(0) if self.actions else None

    def close(self) -> None:
        self.closed = True


def test_window_keys_change_size_toggle_and_snapshot(tmp_path):
    window = ScriptedWindow(["bigger", "bigger", "smaller", "snapshot", "verify", "quit"])
    settings = Settings(min_size=40, snapshot_dir=tmp_path)
    detectors = DetectorSwitch(FakeDetector(), None, verify=False)
    source = ListSource(20)
    reports: list[str] = []
    rc = run(source, detectors, settings, window=window, report=reports.append)
    assert rc == 0
    assert len(window.shown) == 6 and window.closed and source.closed
    assert settings.min_size == 50
    snapshots = list(tmp_path.glob("vj-webcam-*.png"))
    assert len(snapshots) == 1
    assert colour_pixels(cv2.imread(str(snapshots[0])), GREEN) > LEGEND_PIXELS + 500
    assert "frames: 6 processed" in reports[0]


def test_ctrl_c_finishes_the_video(tmp_path):
    video = VideoWriter(tmp_path / "cut.mp4", fps=30.0)
    detectors = DetectorSwitch(FakeDetector(), None, verify=False)
    source = ListSource(5, error=KeyboardInterrupt())
    reports: list[str] = []
    rc = run(source, detectors, Settings(), video=video, report=reports.append)
    assert rc == 130
    assert count_frames(tmp_path / "cut.mp4") == (5, DEMO_SIZE)
    assert "frames: 5 processed" in reports[0]


def test_lost_source_ends_cleanly_with_exit_code_1(tmp_path):
    detectors = DetectorSwitch(FakeDetector(), None, verify=False)
    source = ListSource(3, error=SourceLost("camera 0 stopped delivering frames"))
    reports: list[str] = []
    assert run(source, detectors, Settings(), report=reports.append) == 1
    assert source.closed and "frames: 3 processed" in reports[0]


def test_demo_loops_seamlessly_and_ends_after_one_cycle_headless():
    assert np.array_equal(demo_frame(0), demo_frame(DEMO_CYCLE_FRAMES))
    assert not np.array_equal(demo_frame(0), demo_frame(DEMO_CYCLE_FRAMES // 2))
    source = DemoSource(loop=False)
    frames = 0
    while source.read() is not None:
        frames += 1
    assert frames == DEMO_CYCLE_FRAMES


# ----------------------------------------------------------------- statistics and drawing


def test_hud_and_json_read_the_detectors_statistics(tmp_path):
    from vj_apps.webcam.output import JsonLinesWriter

    stats = DetectionStats(windows=5000, ms=12.5, box_stage=np.array([1, 2]), stages=[
        StageStats("cascade", 4980, 4.0), StageStats("tiny-cnn", 15, 2.0, 3e6),
        StageStats("resnet", 5, 6.0, 1e7)])
    assert stats.stage_ms == pytest.approx(12.0)
    frame = np.zeros((240, 320, 3), np.uint8)
    draw_hud(frame, np.zeros((2, 4)), stats, Hud(source="demo", fps=30.0, min_size=40,
                                                 verify=True))
    assert frame.any()
    path = tmp_path / "frames.jsonl"
    out = JsonLinesWriter(path)
    out.write(0, np.array([[1, 2, 3, 4], [5, 6, 7, 8]]), np.array([0.5, 0.7]), stats)
    out.close()
    record = json.loads(path.read_text())
    assert record["proposed"] == 5000 and record["ms"] == 12.5
    assert [st["name"] for st in record["stages"]] == ["cascade", "tiny-cnn", "resnet"]
    assert record["stages"][1]["flops"] == 3e6 and "flops" not in record["stages"][0]


def test_boxes_are_coloured_by_deciding_stage():
    frame = np.zeros((200, 300, 3), np.uint8)
    stats = DetectionStats(windows=10, stages=[StageStats("a"), StageStats("b")],
                           box_stage=np.array([0, 1]))
    draw_detections(frame, np.array([[10, 10, 60, 60], [150, 80, 80, 80]]),
                    np.array([3.0, 0.97]), stats)
    assert colour_pixels(frame[:, :100], STAGE_COLOURS[0]) > 200
    assert colour_pixels(frame[:, 140:], STAGE_COLOURS[1]) > 200
    assert colour_pixels(frame[:, 140:], STAGE_COLOURS[0]) == 0


# ----------------------------------------------------------------- camera thread


class FakeCapture:
    """A camera that delivers ``frames`` numbered frames, then fails every read."""

    def __init__(self, frames: int, opened: bool = True, delay: float = 0.001) -> None:
        self.left, self.opened, self.delay, self.number = frames, opened, delay, 0

    def isOpened(self) -> bool:  # noqa: N802 - mirrors cv2.VideoCapture
        return self.opened

    def set(self, prop: int, value: float) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 0.0

    def read(self):
        time.sleep(self.delay)
        if self.left <= 0:
            return False, None
        self.left -= 1
        self.number += 1
        pixel = np.frombuffer(self.number.to_bytes(3, "little"), np.uint8)
        return True, np.broadcast_to(pixel, (4, 4, 3)).copy()

    def release(self) -> None:
        self.opened = False


def frame_number(frame: np.ndarray) -> int:
    return int.from_bytes(bytes(frame[0, 0]), "little")


def test_camera_reconnects_then_gives_up_cleanly():
    opens: list[int] = []

    def open_capture(index: int) -> FakeCapture:
        opens.append(index)
        # The first camera works for three frames; after that it is unplugged.
        return FakeCapture(3) if len(opens) == 1 else FakeCapture(0, opened=False)

    camera = CameraSource(2, reconnect_attempts=2, reconnect_delay=0.01,
                          open_capture=open_capture)
    frames = 0
    with pytest.raises(SourceLost, match="after 2 reconnect attempts"):
        for _ in range(10):
            camera.read()
            frames += 1
    camera.close()
    assert 1 <= frames <= 3 and opens == [2, 2, 2] and camera.reconnects == 2


def test_camera_comes_back_after_a_reconnect():
    captures = iter([FakeCapture(2), FakeCapture(0, opened=False), FakeCapture(1000)])
    camera = CameraSource(0, reconnect_attempts=3, reconnect_delay=0.01,
                          open_capture=lambda index: next(captures))
    try:
        for _ in range(10):
            assert camera.read() is not None
        assert camera.reconnects == 2
    finally:
        camera.close()


def test_camera_thread_keeps_only_the_newest_frame():
    camera = CameraSource(0, open_capture=lambda index: FakeCapture(10_000, delay=0.0005))
    try:
        first = frame_number(camera.read())
        time.sleep(0.1)
        second = frame_number(camera.read())
        # Frames captured while the consumer was busy were dropped, not queued.
        assert second - first > 5
    finally:
        camera.close()
    assert not any(t.name == "camera-0" and t.is_alive() for t in threading.enumerate())


def test_unplugged_camera_ends_the_app_with_a_message(monkeypatch, tmp_path, capsys):
    captures = iter([FakeCapture(40, delay=0.01)])
    monkeypatch.setattr(webcam_sources.cv2, "VideoCapture",
                        lambda index: next(captures, FakeCapture(0, opened=False)))
    monkeypatch.setattr(webcam_sources, "RECONNECT_DELAY", 0.01)
    video = tmp_path / "live.avi"
    assert webcam.main(["--source", "0", "--no-window", "--output", str(video)]) == 1
    captured = capsys.readouterr()
    assert "camera 0 stopped delivering frames" in captured.err
    assert "after 3 reconnect attempts" in captured.err
    processed = int(captured.out.split("frames: ")[1].split()[0])
    monkeypatch.undo()  # count_frames needs the real cv2.VideoCapture
    # The 4x4 fake frames also check that tiny frames are written safely.
    assert 1 <= processed <= 40 and count_frames(video) == (processed, (16, 16))


def test_missing_camera_raises_camera_unavailable():
    with pytest.raises(CameraUnavailable, match="camera 5"):
        CameraSource(5, open_capture=lambda index: FakeCapture(0, opened=False))


# ----------------------------------------------------------------- real window under Xvfb


@pytest.fixture
def xvfb_display():
    """A private X display from Xvfb, as ``":N"``."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (Debian package: xvfb)")
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        server.kill()
        pytest.fail("Xvfb did not report a display number")
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


def test_window_shows_boxes_on_screen(xvfb_display, tmp_path):
    from PIL import ImageGrab

    import vj

    # Compile (or load from Numba's disk cache) the detection kernels here first, so a
    # loaded machine does not spend the app's whole screen-grab window compiling.
    vj.load("opencv:default").warmup()
    env = {**os.environ, "DISPLAY": xvfb_display}
    app = subprocess.Popen(
        [sys.executable, "-m", "vj_apps.webcam", "--source", "demo", "--max-frames", "30"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    best = 0
    deadline = time.monotonic() + 150
    try:
        while app.poll() is None and time.monotonic() < deadline:
            shot = np.asarray(ImageGrab.grab(xdisplay=xvfb_display))[..., ::-1]  # RGB -> BGR
            best = max(best, stage_pixels(shot))
            if best > 3 * LEGEND_PIXELS + 300:
                cv2.imwrite(str(tmp_path / "screen.png"), shot)
                break
            time.sleep(0.2)
        out, err = app.communicate(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
    assert app.returncode == 0, err
    assert "running headless" not in err
    # Besides the colour key: at least one face box, 2 px wide and 160+ px around.
    assert best > 3 * LEGEND_PIXELS + 300, f"no boxes on screen (best {best}); stderr: {err}"
    assert "frames: 30 processed" in out
