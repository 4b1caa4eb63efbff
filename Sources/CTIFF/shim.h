// CTIFF: libtiff 4 (libtiff-dev). Its setters and getters are variadic, so Swift reaches them
// through CSlideIO's wrappers.
#include <tiffio.h>
