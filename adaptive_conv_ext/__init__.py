"""adaptive_conv_ext: fused adaptive convolutional kernels for PyTorch.

Zamora Esquivel et al., "Adaptive Convolutional Kernels", ICCV Workshops 2019.
"""

from . import _onnx, convert, reference  # _onnx: registers the op's standard-op form for torch.onnx.export
from ._backends import BackendUnavailableError, available_backends
from .convert import (
    weight_from_paper,
    weight_from_paper_state_dict,
    weight_to_paper,
    weight_to_paper_state_dict,
)
from .functional import adaptive_conv2d
from .modules import AdaptiveConv2d
from .paper import adaptive_conv2d_paper

__version__ = "0.1.0"

__all__ = [
    "AdaptiveConv2d",
    "BackendUnavailableError",
    "adaptive_conv2d",
    "adaptive_conv2d_paper",
    "available_backends",
    "convert",
    "reference",
    "weight_from_paper",
    "weight_from_paper_state_dict",
    "weight_to_paper",
    "weight_to_paper_state_dict",
]
