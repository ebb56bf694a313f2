"""ONNX plumbing shared by the model export (export.py) and the avatar decoders' (avatar_onnx.py):
exporting a module, opening an onnxruntime session and comparing its outputs with torch's."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from engine.errors import ExportError

OPSET = 17
_QUIET = ("instance_norm", "legacy TorchScript", "will be removed", "Converting a tensor",
          "dynamic_axes", "TracerWarning")


def export_module(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
                  axes: dict[str, dict[int, str]]) -> str:
    """torch.onnx.export, TorchScript exporter first (a plain graph), torch.export-based if absent."""
    kwargs = dict(input_names=inputs, output_names=outputs, dynamic_axes=axes, opset_version=OPSET)
    with warnings.catch_warnings():
        for text in _QUIET:
            warnings.filterwarnings("ignore", message=f".*{text}.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        try:
            torch.onnx.export(module, args, str(path), dynamo=False, **kwargs)
            return "torchscript"
        except (TypeError, RuntimeError, NotImplementedError, AttributeError) as first:
            try:
                torch.onnx.export(module, args, str(path), dynamo=True, external_data=False, **kwargs)
                return "dynamo"
            except Exception as err:
                raise ExportError(f"{path.name}: ONNX export failed (TorchScript exporter: {first}; "
                                  f"torch.export-based exporter: {err})") from err


def ort_session(path: Path, threads: int):
    """An onnxruntime CPU session with `threads` intra-op threads and every graph optimisation."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_error(a: Tensor, b: np.ndarray) -> float:
    """Largest absolute difference between a torch output and onnxruntime's (shapes must agree)."""
    if tuple(a.shape) != b.shape:
        raise ExportError(f"ONNX output shaped {b.shape} where torch gives {tuple(a.shape)}")
    return float(np.abs(a.numpy() - b).max())
