// CHDF5: the HDF5 C library (libhdf5-dev, serial build). Its type and property identifiers are
// macros Swift cannot import, so Swift reaches it through CSlideIO's wrappers.
#include <hdf5.h>
