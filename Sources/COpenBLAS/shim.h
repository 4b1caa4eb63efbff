// COpenBLAS: the CBLAS interface of Debian's OpenBLAS (libopenblas-dev), plus its thread control.
#include <cblas.h>
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
