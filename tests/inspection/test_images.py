"""Decoding uploads under limits, and the pure model on images with known labels."""

import numpy as np
import pytest

from inspection.images import MAX_BYTES, ImageRejected, decode
from inspection.models import load_model, mask_summary
from tests.inspection.helpers import bomb_png, neu_image, tile_image, truncated_jpeg


def test_a_real_jpeg_decodes_to_grey():
    d = decode(neu_image())
    assert d.format == "JPEG" and d.grey.shape == (200, 200) and d.grey.dtype == np.uint8


@pytest.mark.parametrize("data, problem", [
    (b"", "empty"),
    (b"%PDF-1.4 not an image", "not a recognised image"),
    (truncated_jpeg(), "truncated"),
    (bomb_png(), "pixel limit"),
    (b"\xff" * (MAX_BYTES + 1), "byte limit"),
])
def test_bad_images_are_refused_naming_the_problem(data, problem):
    with pytest.raises(ImageRejected, match=problem):
        decode(data)


def test_the_neu_model_names_the_class_of_a_real_image():
    model = load_model("neu")
    # scratches are the clearest NEU class; the slice image is in the training set, so this checks the served
    # path (decode, resize, ONNX, softmax), not accuracy (accuracy is the card's CV and `evaluate vision`)
    result = model.run(decode(neu_image("scratches_1.jpg")).grey)
    assert result.label == "scratches" and result.defect
    assert result.probs.shape == (6,) and abs(float(result.probs.sum()) - 1) < 1e-5


def test_the_tile_model_returns_a_mask_at_image_size():
    model = load_model("mtile")
    path, data = tile_image("Free")
    grey = decode(data).grey
    result = model.run(grey)
    assert result.mask is not None and result.mask.shape == grey.shape
    assert 0 <= result.score <= 1


def test_mask_summary_gives_area_and_box():
    m = np.zeros((10, 20), bool)
    m[2:5, 3:9] = True
    assert mask_summary(m) == {"area_px": 18, "area_fraction": 18 / 200, "bbox": [3, 2, 9, 5]}
    assert mask_summary(np.zeros((4, 4), bool))["bbox"] is None
