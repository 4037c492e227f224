// Makes a shared library importable as a Python module (adaptive_conv_ext._C, the CPU
// operators and the schemas; adaptive_conv_ext._C_cuda, the CUDA kernels); importing it
// runs the static STABLE_TORCH_LIBRARY registrations. The ops have no Python bindings
// of their own: they are reached through torch.ops.adaptive_conv_ext. Built with the
// Python limited API (abi3). ADAPTIVE_CONV_MODULE is the module's name (_C or _C_cuda).
#include <Python.h>

#ifndef ADAPTIVE_CONV_MODULE
#define ADAPTIVE_CONV_MODULE _C
#endif

#define ADAPTIVE_CONV_STR2(x) #x
#define ADAPTIVE_CONV_STR(x) ADAPTIVE_CONV_STR2(x)
#define ADAPTIVE_CONV_CAT2(a, b) a##b
#define ADAPTIVE_CONV_CAT(a, b) ADAPTIVE_CONV_CAT2(a, b)

extern "C" PyMODINIT_FUNC ADAPTIVE_CONV_CAT(PyInit_, ADAPTIVE_CONV_MODULE)(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, ADAPTIVE_CONV_STR(ADAPTIVE_CONV_MODULE),
                                          nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
