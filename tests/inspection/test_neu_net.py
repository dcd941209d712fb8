"""The NEU classifiers' mirror (torch, from the `train` extra): judged as the mean over the image and its left-right
mirror in eval mode and in the exported graph, one view while training."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the `train` extra; serving needs only onnxruntime

from inspection.nets import SmallCnn, TinyVit  # noqa: E402
from inspection.train import export_onnx  # noqa: E402


@pytest.mark.parametrize("make", [lambda: SmallCnn(6, width=4, mirror=True),
                                  lambda: TinyVit(6, 32, dim=16, depth=1, mirror=True)])
def test_a_mirrored_classifier_averages_the_image_and_its_mirror_and_exports_so(make):
    import onnxruntime as ort

    torch.manual_seed(0)
    net = make().eval()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        logits = net(x)
        assert torch.allclose(logits, (net.logits(x) + net.logits(x.flip(3))) / 2, atol=1e-6)
        assert torch.allclose(logits, net(x.flip(3)), atol=1e-6)
    session = ort.InferenceSession(export_onnx(net, 32, ["logits"]), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": np.ascontiguousarray(x.numpy()[:2])})[0]  # any batch size
    np.testing.assert_allclose(got, logits.numpy()[:2], atol=1e-4)
    net.train()  # last: a training-mode call moves BatchNorm's running statistics
    with torch.no_grad():
        assert torch.equal(net(x), net.logits(x))  # training sees one view
