"""The tile U-Net and its training pieces (torch, from the `train` extra): output contract, ONNX export, crops, seed."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the `train` extra; serving needs only onnxruntime

from inspection.nets import TileUnet  # noqa: E402
from inspection.train import Plan, _crops, export_onnx, fit_tile, tile_model  # noqa: E402


def test_class_logits_are_the_mask_score_and_the_types():
    torch.manual_seed(0)
    net = TileUnet(6, width=8, top=4).eval()
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        logits, mask = net(x)
        defect, types, half = net.parts(x)
    assert logits.shape == (3, 6) and mask.shape == (3, 1, 64, 64) and half.shape == (3, 1, 32, 32)
    # the defect logit is the mean of the 4 strongest half-size mask logits
    assert torch.allclose(defect, half.flatten(1).sort(1).values[:, -4:].mean(1), atol=1e-5)
    p, s = torch.softmax(logits, 1), torch.sigmoid(defect)
    assert torch.allclose(p[:, 0], 1 - s, atol=1e-6)  # P(Free) = 1 - s: the served score 1 - P(Free) is s
    assert torch.allclose(p[:, 1:], s[:, None] * torch.softmax(types, 1), atol=1e-6)


def test_the_mirrored_model_judges_an_image_and_its_mirror_alike():
    torch.manual_seed(0)
    net = TileUnet(6, width=8, mirror=True).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        logits, mask = net(x)
        logits2, mask2 = net(x.flip(3))
        defect, _, _ = net.parts(x)
        defect2, _, _ = net.parts(x.flip(3))
    assert torch.allclose(logits, logits2, atol=1e-5) and torch.allclose(mask, mask2.flip(3), atol=1e-5)
    assert torch.allclose(torch.softmax(logits, 1)[:, 0], 1 - torch.sigmoid((defect + defect2) / 2), atol=1e-6)


def test_the_onnx_export_takes_any_batch_and_agrees_with_torch():
    import onnxruntime as ort

    torch.manual_seed(0)
    net = TileUnet(6, width=8, mirror=True).eval()
    session = ort.InferenceSession(export_onnx(net, 64, ["logits", "mask_logits"]),
                                   providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((5, 1, 64, 64), dtype=np.float32)
    logits, mask = session.run(None, {"image": x})
    with torch.no_grad():
        want_logits, want_mask = net(torch.from_numpy(x))
    assert logits.shape == (5, 6) and mask.shape == (5, 1, 64, 64)
    np.testing.assert_allclose(logits, want_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(mask, want_mask.numpy(), atol=1e-4)


def test_a_defect_crop_holds_its_defect_and_a_crop_is_cut_from_the_image():
    x = np.random.default_rng(1).random((2, 1, 40, 40), dtype=np.float32)
    m = np.zeros_like(x)
    m[0, 0, 3, 37] = 1  # one defect pixel near a corner: the crop must be clipped to the image and still hold it
    positives = [np.flatnonzero(mi[0] > 0.5) for mi in m]
    plan = Plan(crop=16, on_defect=1.0)
    xb, mb = _crops(x, m, np.array([0, 0, 1, 1]), plan, positives, np.random.default_rng(0))
    assert xb.shape == (4, 1, 16, 16) and mb.shape == (4, 1, 16, 16)
    assert mb[0].sum() == 1 and mb[1].sum() == 1 and mb[2:].sum() == 0
    for j, i in enumerate([0, 0, 1, 1]):  # every crop is a window of its own image
        windows = np.lib.stride_tricks.sliding_window_view(x[i, 0], (16, 16)).reshape(-1, 16, 16)
        assert (np.abs(windows - xb[j, 0].numpy()).max(axis=(1, 2)) == 0).any()


def test_fitting_the_tile_model_is_deterministic_under_a_seed():
    rng = np.random.default_rng(2)
    x = rng.random((8, 1, 32, 32), dtype=np.float32)
    m = np.zeros_like(x)
    y = np.array([0, 0, 0, 0, 1, 2, 1, 2])  # Free and two of the five defect types
    m[4:, 0, 10:14, 10:14] = 1
    x[4:, 0, 10:14, 10:14] = 1.0
    plan = Plan(epochs=2, batch=4, crop=16, seed=3, balanced=True, width=4, top=2)
    a = fit_tile(tile_model(plan), x, y, m, plan)
    b = fit_tile(tile_model(plan), x, y, m, plan)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
