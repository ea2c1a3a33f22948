#ifndef CFEDREC_BLAS_SHIM_H
#define CFEDREC_BLAS_SHIM_H
// OpenBLAS's CBLAS interface (Debian: libopenblas-dev, pkg-config "openblas").
#include <cblas.h>
#endif
