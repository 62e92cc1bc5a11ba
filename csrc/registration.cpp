// The one registration point of the `hanet` library: the schemas of contract.h and
// the kernels of each backend.  Fake (meta) kernels and
// autograd are registered from Python (hanet/ops/_library.py), from the contract.
#include <torch/library.h>

#include "contract.h"

#ifdef HANET_PYTHON_MODULE
#include <Python.h>
#endif

#define HANET_DEF(name, schema) m.def(schema);
TORCH_LIBRARY(hanet, m) { HANET_SCHEMAS(HANET_DEF) }

#define HANET_IMPL_CPU(name, schema) m.impl(#name, &hanet::cpu::name);
#define HANET_IMPL_GPU(name, schema) m.impl(#name, &hanet::gpu::name);

TORCH_LIBRARY_IMPL(hanet, CPU, m) { HANET_SCHEMAS(HANET_IMPL_CPU) }

#ifdef HANET_WITH_CUDA
TORCH_LIBRARY_IMPL(hanet, CUDA, m) { HANET_SCHEMAS(HANET_IMPL_GPU) }
#endif

#ifdef HANET_PYTHON_MODULE
// `import hanet._C` loads this library, which registers the ops above.  Its cuda_archs
// ("80_90_100ptx": cubins for sm_80, sm_90, sm_100 and compute_100 PTX; "" without
// CUDA) tell hanet.ops._extension which GPUs the kernels can run on.
#ifndef HANET_CUDA_ARCHS
#define HANET_CUDA_ARCHS
#endif
#define HANET_STR2(x) #x
#define HANET_STR(x) HANET_STR2(x)
static struct PyModuleDef hanet_module = {
    PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr, nullptr, nullptr, nullptr, nullptr};
PyMODINIT_FUNC PyInit__C(void) {
  PyObject* m = PyModule_Create(&hanet_module);
  if (m != nullptr && PyModule_AddStringConstant(m, "cuda_archs", HANET_STR(HANET_CUDA_ARCHS)) < 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
#endif
