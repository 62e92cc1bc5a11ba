// Operator schemas of the `hanet` library.  Kernels live in cpu/*.cpp and
// hanet_kernels.cu; fake (meta) kernels and autograd are registered from Python
// (hanet/ops/_library.py) so that torch.compile and torch.export see them.
#include <torch/library.h>

#ifdef HANET_PYTHON_MODULE
#include <Python.h>
#endif

TORCH_LIBRARY(hanet, m) {
  // (B, C, H, W) -> (B, C, rows) and, for mode="max", the arg-max flat index h*W+w
  // (an empty int64 tensor for mode="mean").
  m.def("width_pool(Tensor x, SymInt rows, str mode=\"mean\") -> (Tensor, Tensor)");
  m.def(
      "width_pool_backward(Tensor grad, Tensor indices, SymInt height, SymInt width, "
      "str mode, bool channels_last) -> Tensor");
  // (B, C, h) -> (B, C, size), linear, align_corners=False.
  m.def("height_interp(Tensor a, SymInt size) -> Tensor");
  m.def("height_interp_backward(Tensor grad, SymInt in_size) -> Tensor");
  // feat * interp(sigmoid(logits), H)[..., None]
  m.def("attention_rescale(Tensor feat, Tensor logits) -> Tensor");
  m.def(
      "attention_rescale_backward(Tensor grad, Tensor feat, Tensor logits) -> (Tensor, "
      "Tensor)");
}

#ifdef HANET_PYTHON_MODULE
// `import hanet._C` loads this library, which registers the ops above.
static struct PyModuleDef hanet_module = {
    PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr, nullptr, nullptr, nullptr, nullptr};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&hanet_module); }
#endif
