"""Benchmarks behind ``cellscreen bench``: each function returns plain dicts, one JSON object each.

* ``ceiling``            the machine's measured fp32/bf16 GFLOP/s for a square matmul and a 3x3 convolution
* ``cache_build``        images/s of indexing a dataset folder and building its cache from scratch
* ``train_throughput``   training steps (images/s) through the real training module on synthetic batches
* ``infer_throughput``   cells/s of one model per variant: eager, channels-last, bf16, torch.compile, onnxruntime
* ``time_to_accuracy``   wall seconds of a real training run until validation accuracy first reaches a target
* ``compare_reference``  cellscreen against the Keras reference (``keras_reference.py``, shipped here), with ratios

Throughputs carry ``gflops_per_s`` (FLOPs from ``count_flops``; a training step counts 3x the forward
pass) and ``fraction_of_ceiling``: that rate over the fp32 convolution ceiling measured in the same
process (a short probe of one large 3x3 convolution on torch and on onnxruntime, the faster counts), or
one passed in.  The probe is one shape, not the hardware's peak: a model whose layers suit a library
better, or a machine whose load dropped after the probe, can come out above 1.  Every record also says
which benchmark it is, how many threads torch uses, the CPU model and the cellscreen version.

One private module per benchmark; this package is their face.
"""

from cellscreen.benchmarks._cache import cache_build
from cellscreen.benchmarks._ceiling import CONV_SHAPE, ceiling, conv_ceiling
from cellscreen.benchmarks._common import cpu_name, record
from cellscreen.benchmarks._compare_reference import (KERAS_REQUIREMENTS, KERAS_SETUP, REFERENCE_SCRIPT,
                                                     compare_reference)
from cellscreen.benchmarks._infer import VARIANTS, infer_throughput, parse_variants
from cellscreen.benchmarks._time_to_accuracy import epoch_log, time_to_accuracy
from cellscreen.benchmarks._train import train_throughput

__all__ = ["CONV_SHAPE", "KERAS_REQUIREMENTS", "KERAS_SETUP", "REFERENCE_SCRIPT", "VARIANTS", "cache_build",
           "ceiling", "compare_reference", "conv_ceiling", "cpu_name", "epoch_log", "infer_throughput",
           "parse_variants", "record", "time_to_accuracy", "train_throughput"]
