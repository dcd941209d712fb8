"""Camera inspection: defect models (training, ONNX serving), the inspection store and the camera folder source."""
