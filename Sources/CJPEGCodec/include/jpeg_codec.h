// jpeg_codec.h: JPEG decoding and encoding on libjpeg(-turbo) behind a setjmp error handler, so
// a corrupt file is an error message for Swift, never a longjmp through Swift frames or exit().
#ifndef SMIL_JPEG_CODEC_H
#define SMIL_JPEG_CODEC_H

#include <stddef.h>

/// Decodes JPEG bytes to interleaved 8-bit RGB (malloc'd, caller frees). Returns 1, or 0 with a
/// message in `error`.
int smil_jpeg_decode(const unsigned char *data, size_t size, int *width, int *height,
                     unsigned char **pixels, char *error, int error_size);

/// Encodes interleaved 8-bit RGB as JPEG bytes (malloc'd, caller frees). Returns 1, or 0 with a
/// message in `error`.
int smil_jpeg_encode(const unsigned char *pixels, int width, int height, int quality,
                     unsigned char **data, size_t *size, char *error, int error_size);

#endif
