#define PY_SSIZE_T_CLEAN
#include <Python.h>

// Device code for every arch of the build (cuobjdump --list-elf lists one cubin each).
__global__ void fill_kernel(int* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = 42;
}

// Host code only: importing the module needs no GPU.
static PyObject* answer(PyObject* self, PyObject* args) { return PyLong_FromLong(42); }

static PyMethodDef methods[] = {
    {"answer", answer, METH_NOARGS, "Return 42."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", NULL, -1, methods};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module); }
