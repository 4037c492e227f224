// The CUDA library's Python module, adaptive_conv_ext._C_cuda (see python_module.cpp).
#define ADAPTIVE_CONV_MODULE _C_cuda
#include "../../python_module.cpp"
