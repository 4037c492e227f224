"""Triton kernels for adaptive_conv2d (backend="triton").

``ops.forward`` / ``ops.backward`` are the operators ``adaptive_conv_ext::triton_forward``
and ``triton_backward``; see ops.py for the numerics switches (TF32, fast tanh) and
kernels.py for the tiling. Importing this package imports triton; the kernels run on
CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 was set before triton was imported.
"""
