// COpenSlide: OpenSlide 3.4 (libopenslide-dev): .svs, tiled TIFF, .ndpi, MIRAX and more.
#include <openslide.h>
