"""Window crops: exact slices where no resampling is needed, batch-independent, bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from vj_dynamic.face.crops import CROP_MARGIN, CROP_SIZE, crop_regions, extract_crops

import vj

WINDOW = CROP_SIZE - 2 * CROP_MARGIN


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.camera())  # 512 x 512 uint8


def test_window_sized_box_is_a_plain_slice(photo):
    x, y = 100, 57
    crop = extract_crops(photo, np.array([[x, y, WINDOW, WINDOW]]))[0]
    m = CROP_MARGIN
    assert crop.dtype == np.uint8 and crop.shape == (CROP_SIZE, CROP_SIZE)
    np.testing.assert_array_equal(crop, photo[y - m:y - m + CROP_SIZE, x - m:x - m + CROP_SIZE])


def test_double_sized_box_is_a_slice_of_the_halved_image(photo):
    half = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)
    crop = extract_crops(photo, np.array([[80, 40, 2 * WINDOW, 2 * WINDOW]]))[0]
    m = CROP_MARGIN
    np.testing.assert_array_equal(crop, half[20 - m:20 - m + CROP_SIZE, 40 - m:40 - m + CROP_SIZE])


def test_batch_equals_one_at_a_time(photo):
    rng = np.random.default_rng(0)
    sides = rng.integers(10, 200, 40)
    boxes = np.stack([rng.integers(-5, 480, 40), rng.integers(-5, 480, 40), sides, sides], 1)
    boxes = np.concatenate([boxes, boxes[:5]])  # repeated sizes share one resize
    batch = extract_crops(photo, boxes)
    for i, box in enumerate(boxes):
        np.testing.assert_array_equal(batch[i], extract_crops(photo, box[None])[0])


def test_matches_a_direct_resample_of_the_region(photo):
    # Against the obvious (slow) reference: cut the grown region, resize it alone. They
    # differ by sub-pixel rounding and bilinear-versus-area filtering, far less than
    # when the crop is misplaced by a tenth of its width.
    smooth = cv2.GaussianBlur(photo, (0, 0), 3.0)
    boxes = np.array([[100, 120, 24, 24], [200, 90, 37, 37], [50, 260, 61, 61],
                      [240, 220, 150, 150], [300, 100, 96, 96]])

    def error(crops, regions):
        out = []
        for crop, (x, y, w, h) in zip(crops.astype(np.float64), regions, strict=True):
            region = smooth[round(y):round(y + h), round(x):round(x + w)]
            reference = cv2.resize(region, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
            out.append(np.abs(crop - reference).mean())
        return np.array(out)

    good = error(extract_crops(smooth, boxes), crop_regions(boxes))
    shifted = boxes + np.stack([boxes[:, 2] // 10, boxes[:, 3] // 10, 0 * boxes[:, 2],
                                0 * boxes[:, 3]], axis=1)
    bad = error(extract_crops(smooth, shifted), crop_regions(boxes))
    assert good.max() < 7.0
    assert np.all(bad > 2 * good) and bad.mean() > 10.0


def test_cascade_candidates_are_windows_of_the_pyramid(photo):
    # A lenient cascade's raw windows: the crop's centre is its window on its level.
    det = vj.load(vj.load_cascade("opencv:default").truncated(3))
    boxes = det.candidates(photo, 1.25, 40)[::50]
    assert len(boxes) > 3
    crops = extract_crops(photo, boxes)
    assert crops.shape == (len(boxes), CROP_SIZE, CROP_SIZE)
    region = crop_regions(boxes)
    np.testing.assert_allclose(region[:, 2], boxes[:, 2] * CROP_SIZE / WINDOW)


def test_parts_outside_the_image_repeat_the_border():
    image = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8)
    crop = extract_crops(image, np.array([[0, 0, WINDOW, WINDOW]]))[0]
    m = CROP_MARGIN
    np.testing.assert_array_equal(crop[:m, m], np.full(m, image[0, 0]))
    np.testing.assert_array_equal(crop[m, :m], np.full(m, image[0, 0]))
    np.testing.assert_array_equal(crop[m:, m:], image[:CROP_SIZE - m, :CROP_SIZE - m])


def test_colour_and_empty_input(photo):
    bgr = cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR)
    box = np.array([[30, 30, 40, 40]])
    np.testing.assert_array_equal(extract_crops(bgr, box), extract_crops(photo, box))
    assert extract_crops(photo, np.zeros((0, 4), np.int32)).shape == (0, CROP_SIZE, CROP_SIZE)


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        (np.zeros((3, 3)), "shape"),
        (np.array([[1.5, 2, 30, 30]]), "integer"),
        (np.array([[10, 10, 0, 30]]), "at least 1"),
        (np.array([[600, 10, 30, 30]]), "outside"),
    ],
)
def test_bad_boxes(photo, boxes, message):
    with pytest.raises(ValueError, match=message):
        extract_crops(photo, boxes)


def test_bad_geometry_and_image(photo):
    with pytest.raises(ValueError, match="margin"):
        extract_crops(photo, np.array([[0, 0, 24, 24]]), size=10, margin=4)
    with pytest.raises(ValueError, match="uint8"):
        extract_crops(photo.astype(np.float32), np.array([[0, 0, 24, 24]]))


@pytest.mark.parametrize("shape", [(480, 640), (97, 203)])
def test_many_crops_and_any_image_size_equal_small_batches(shape):
    # Past ~1,100 crops the work is split into several remaps; images whose sides do not
    # halve evenly take the whole-image path. Neither may change a crop.
    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 1.5)
    h, w = shape
    n = 1300
    side = rng.integers(8, min(h, w), n)
    boxes = np.stack([rng.integers(-4, w - 4, n), rng.integers(-4, h - 4, n), side, side], 1)
    together = extract_crops(image, boxes)
    for part in np.array_split(np.arange(n), 13):
        np.testing.assert_array_equal(together[part], extract_crops(image, boxes[part]))


def reference_crop(gray: np.ndarray, box) -> np.ndarray:
    """One crop the plain way: halve the whole image while >= 2x remains, then sample
    the crop's pixels bilinearly where a resize of that halving to the crop's scale puts
    them."""
    inner = CROP_SIZE - 2 * CROP_MARGIN
    x, y, w, h = (int(v) for v in box)
    sx, sy = w / inner, h / inner
    source, halvings = gray, 0
    while min(sx, sy) >= 2.0 * 2**halvings:
        source = cv2.resize(source, (source.shape[1] // 2, source.shape[0] // 2),
                            interpolation=cv2.INTER_AREA)
        halvings += 1
    level_w = max(1, round(gray.shape[1] / sx))
    level_h = max(1, round(gray.shape[0] / sy))
    left = round(x / sx) - CROP_MARGIN
    top = round(y / sy) - CROP_MARGIN
    grid = np.arange(CROP_SIZE) + 0.5
    map_x = (left + grid) * (source.shape[1] / level_w) - 0.5
    map_y = (top + grid) * (source.shape[0] / level_h) - 0.5
    map_x, map_y = np.meshgrid(map_x, map_y)
    return cv2.remap(source, map_x.astype(np.float32), map_y.astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("shape", [(512, 512), (480, 640), (97, 203)])
def test_equals_the_whole_image_reference(shape):
    # Halvings made over only the sampled part of the image must give the same pixels
    # as halving the whole image.
    rng = np.random.default_rng(11)
    image = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 1.0)
    h, w = shape
    n = 60
    side = rng.integers(6, min(h, w) + 40, n)
    boxes = np.stack([rng.integers(-side // 2, w - 1), rng.integers(-side // 2, h - 1),
                      side, (side * rng.uniform(0.8, 1.25, n)).astype(int) + 1], 1)
    crops = extract_crops(image, boxes)
    for crop, box in zip(crops, boxes, strict=True):
        np.testing.assert_array_equal(crop, reference_crop(image, box))
