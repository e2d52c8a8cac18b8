"""``bench ceiling``: the machine's measured GFLOP/s for a square matmul and a 3x3 convolution, and the
quick convolution probe the throughputs are compared with."""

from __future__ import annotations

import numpy as np
import torch

from cellscreen.benchmarks._common import record, rounded, significant, timed

__all__ = ["CONV_SHAPE", "ceiling", "ceiling_fields", "conv_ceiling"]

# the convolution of the ceiling probe: a ResNet stage-1 layer
CONV_SHAPE = {"batch": 32, "channels": 64, "size": 56}


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _matmul_gflops(dtype: str, n: int, seconds: float) -> float:
    a = torch.randn(n, n).to(_DTYPES[dtype])
    b = torch.randn(n, n).to(_DTYPES[dtype])
    with torch.inference_mode():
        calls, total = timed(lambda: torch.mm(a, b), seconds)
    return 2 * n**3 * calls / total / 1e9


def _conv_gflops(dtype: str, batch: int, channels: int, size: int, seconds: float) -> float:
    """A 3x3 convolution, padding 1, channels-last (the layout cellscreen trains and predicts in)."""
    x = torch.randn(batch, channels, size, size).to(_DTYPES[dtype]).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3).to(_DTYPES[dtype]).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        calls, total = timed(lambda: torch.nn.functional.conv2d(x, w, padding=1), seconds)
    return 2 * batch * channels * channels * 9 * size * size * calls / total / 1e9


def _onnx_conv_gflops(batch: int, channels: int, size: int, seconds: float) -> float:
    """The same fp32 3x3 convolution on onnxruntime (its own kernels, often faster on CPUs without AVX-512),
    with as many threads as torch uses."""
    from onnx import TensorProto, helper, numpy_helper  # keeps start-up fast

    from cellscreen.serve.graph import onnx_session

    weights = np.random.default_rng(0).standard_normal((channels, channels, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, channels, size, size])],
        [numpy_helper.from_array(weights, "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = min(proto.ir_version, 9)
    session = onnx_session(proto.SerializeToString(), torch.get_num_threads())
    x = np.random.default_rng(1).standard_normal((batch, channels, size, size)).astype(np.float32)
    calls, total = timed(lambda: session.run(["y"], {"x": x}), seconds)
    return 2 * batch * channels * channels * 9 * size * size * calls / total / 1e9


def _conv_label(batch: int, channels: int, size: int) -> str:
    return f"3x3 conv, batch {batch}, {channels}->{channels} channels, {size}x{size}"


def conv_ceiling(seconds: float = 0.3, **shape) -> tuple[float, str]:
    """A quick fp32 convolution probe, the faster of torch (channels-last) and onnxruntime:
    (GFLOP/s, what was measured)."""
    shape = {**CONV_SHAPE, **shape}
    args = (shape["batch"], shape["channels"], shape["size"])
    rates = {"torch": _conv_gflops("fp32", *args, seconds / 2), "onnxruntime": _onnx_conv_gflops(*args, seconds / 2)}
    best = max(rates, key=rates.get)
    return rates[best], f"fp32 {_conv_label(*args)} on {best} (the faster), probed {seconds:g} s"


def ceiling_fields(ceiling_gflops: float | None, achieved_gflops: float) -> dict:
    if ceiling_gflops is None:
        ceiling_gflops, source = conv_ceiling()
    else:
        source = "given"
    return {"ceiling_gflops_per_s": rounded(ceiling_gflops, 2), "ceiling_source": source,
            "fraction_of_ceiling": significant(achieved_gflops / ceiling_gflops) if ceiling_gflops > 0 else None}


def ceiling(*, seconds: float = 1.0, matmul_size: int = 1024, conv_batch: int = CONV_SHAPE["batch"],
            conv_channels: int = CONV_SHAPE["channels"], conv_size: int = CONV_SHAPE["size"]) -> dict:
    """fp32 and bf16 GFLOP/s of a square matmul and a 3x3 convolution in torch, and the fp32 convolution on
    onnxruntime, each timed ``seconds`` after a warm-up call (at least one timed call, however slow: bf16
    without hardware support can take seconds)."""
    conv = (conv_batch, conv_channels, conv_size)
    square = f"{matmul_size}x{matmul_size}"
    fields: dict = {"seconds_per_probe": seconds, "matmul": f"{square} @ {square}",
                    "conv": _conv_label(*conv) + ", torch channels-last"}
    for dtype in ("fp32", "bf16"):
        # to significant digits, not to 0.01: a tiny probe on a busy machine can run at less than that
        fields[f"{dtype}_matmul_gflops_per_s"] = significant(_matmul_gflops(dtype, matmul_size, seconds))
        fields[f"{dtype}_conv_gflops_per_s"] = significant(_conv_gflops(dtype, *conv, seconds))
    fp32, bf16 = fields["fp32_conv_gflops_per_s"], fields["bf16_conv_gflops_per_s"]
    fields["bf16_over_fp32_conv"] = significant(bf16 / fp32, 3) if fp32 > 0 else None
    fields["fp32_conv_onnxruntime_gflops_per_s"] = significant(_onnx_conv_gflops(*conv, seconds))
    fields["cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # the widest vector ISA torch uses
    return record("ceiling", **fields)
