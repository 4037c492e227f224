// Makes the shared library importable as `adaptive_conv_ext._C`; importing it
// runs the static TORCH_LIBRARY registrations. The ops have no Python bindings
// of their own: they are reached through torch.ops.adaptive_conv_ext.
#include <Python.h>

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
