// CJPEG: libjpeg-turbo's libjpeg API (libjpeg-dev).
#include <stdio.h>
#include <jpeglib.h>
