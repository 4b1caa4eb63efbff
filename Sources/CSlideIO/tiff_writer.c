// tiff_writer.c: tiled pyramidal TIFFs through libtiff, for test slides and exported maps.

#include "slide_io.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

typedef struct {
    char *buffer;
    int size;
} message_sink;

static int keep_first_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif;
    message_sink *sink = user;
    if (sink->size > 0 && sink->buffer[0] == 0) {
        int n = snprintf(sink->buffer, (size_t)sink->size, "%s: ", module ? module : "libtiff");
        if (n >= 0 && n < sink->size) vsnprintf(sink->buffer + n, (size_t)(sink->size - n), fmt, ap);
    }
    return 1;
}

static int ignore_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif; (void)user; (void)module; (void)fmt; (void)ap;
    return 1;
}

static void fail(message_sink *sink, const char *what) {
    if (sink->size > 0 && sink->buffer[0] == 0) snprintf(sink->buffer, (size_t)sink->size, "%s", what);
}

/// One image as a directory: tiled (level) or stripped (thumbnail).
static int write_directory(TIFF *tif, const smil_tiff_image *image, int tiled, int reduced, int tile,
                           int quality, const char *description, double pixels_per_cm, message_sink *sink) {
    const uint32_t w = (uint32_t)image->width, h = (uint32_t)image->height;
    int ok = 1;
    ok &= TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, w);
    ok &= TIFFSetField(tif, TIFFTAG_IMAGELENGTH, h);
    ok &= TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, 3);
    ok &= TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, 8);
    ok &= TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    if (reduced) ok &= TIFFSetField(tif, TIFFTAG_SUBFILETYPE, FILETYPE_REDUCEDIMAGE);
    if (description) ok &= TIFFSetField(tif, TIFFTAG_IMAGEDESCRIPTION, description);
    if (pixels_per_cm > 0) {
        ok &= TIFFSetField(tif, TIFFTAG_RESOLUTIONUNIT, RESUNIT_CENTIMETER);
        ok &= TIFFSetField(tif, TIFFTAG_XRESOLUTION, (float)pixels_per_cm);
        ok &= TIFFSetField(tif, TIFFTAG_YRESOLUTION, (float)pixels_per_cm);
    }
    if (quality > 0) {
        ok &= TIFFSetField(tif, TIFFTAG_COMPRESSION, COMPRESSION_JPEG);
        ok &= TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_YCBCR);
        ok &= TIFFSetField(tif, TIFFTAG_JPEGQUALITY, quality);
        // libtiff converts the RGB rows it is given to YCbCr (2x2 subsampled).
        ok &= TIFFSetField(tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    } else {
        ok &= TIFFSetField(tif, TIFFTAG_COMPRESSION, COMPRESSION_ADOBE_DEFLATE);
        ok &= TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
    }
    if (!ok) { fail(sink, "cannot set the TIFF fields"); return 0; }

    if (tiled) {
        if (!TIFFSetField(tif, TIFFTAG_TILEWIDTH, (uint32_t)tile) || !TIFFSetField(tif, TIFFTAG_TILELENGTH, (uint32_t)tile)) {
            fail(sink, "cannot set the tile size");
            return 0;
        }
        const size_t tile_bytes = (size_t)tile * (size_t)tile * 3;
        unsigned char *buffer = malloc(tile_bytes);
        if (!buffer) { fail(sink, "out of memory for a tile"); return 0; }
        for (uint32_t y = 0; y < h; y += (uint32_t)tile) {
            for (uint32_t x = 0; x < w; x += (uint32_t)tile) {
                // Edge tiles are padded with white, as scanners pad them.
                memset(buffer, 255, tile_bytes);
                const uint32_t rows = (h - y < (uint32_t)tile) ? h - y : (uint32_t)tile;
                const uint32_t cols = (w - x < (uint32_t)tile) ? w - x : (uint32_t)tile;
                for (uint32_t r = 0; r < rows; r++) {
                    memcpy(buffer + (size_t)r * (size_t)tile * 3, image->rgb + ((size_t)(y + r) * w + x) * 3, (size_t)cols * 3);
                }
                if (TIFFWriteTile(tif, buffer, x, y, 0, 0) < 0) {
                    free(buffer);
                    fail(sink, "cannot write a tile");
                    return 0;
                }
            }
        }
        free(buffer);
    } else {
        const uint32_t rows_per_strip = 16;
        if (!TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, rows_per_strip)) { fail(sink, "cannot set the strip size"); return 0; }
        for (uint32_t y = 0; y < h; y++) {
            if (TIFFWriteScanline(tif, (void *)(image->rgb + (size_t)y * w * 3), y, 0) < 0) {
                fail(sink, "cannot write a row");
                return 0;
            }
        }
    }
    if (!TIFFWriteDirectory(tif)) { fail(sink, "cannot write the directory"); return 0; }
    return 1;
}

int smil_tiff_write_pyramid(const char *path, const smil_tiff_image *levels, int count,
                            const smil_tiff_image *thumbnail, int tile_size, int jpeg_quality,
                            const char *description, double pixels_per_cm,
                            char *error, int error_size) {
    message_sink sink = { error, error_size };
    if (error_size > 0) error[0] = 0;
    if (count < 1 || tile_size < 16 || tile_size % 16 != 0 || jpeg_quality < 0 || jpeg_quality > 100) {
        fail(&sink, "invalid pyramid: needs a level, a tile size that is a multiple of 16, and a quality of 0-100");
        return 0;
    }
    double bytes = 0;
    for (int i = 0; i < count; i++) {
        if (!levels[i].rgb || levels[i].width < 1 || levels[i].height < 1) { fail(&sink, "empty level"); return 0; }
        bytes += (double)levels[i].width * levels[i].height * 3;
    }
    TIFFOpenOptions *options = TIFFOpenOptionsAlloc();
    if (!options) { fail(&sink, "out of memory"); return 0; }
    TIFFOpenOptionsSetErrorHandlerExtR(options, keep_first_error, &sink);
    TIFFOpenOptionsSetWarningHandlerExtR(options, ignore_warning, NULL);
    // BigTIFF only where classic TIFF's 4 GiB offsets would not reach.
    TIFF *tif = TIFFOpenExt(path, bytes > 3.5e9 ? "w8" : "w", options);
    TIFFOpenOptionsFree(options);
    if (!tif) { fail(&sink, "cannot create the file"); return 0; }
    int ok = write_directory(tif, &levels[0], 1, 0, tile_size, jpeg_quality, description, pixels_per_cm, &sink);
    if (ok && thumbnail) ok = write_directory(tif, thumbnail, 0, 0, tile_size, jpeg_quality, NULL, 0, &sink);
    for (int i = 1; ok && i < count; i++) {
        ok = write_directory(tif, &levels[i], 1, 1, tile_size, jpeg_quality, NULL, 0, &sink);
    }
    TIFFClose(tif);
    return ok;
}

void smil_tiff_quiet(void) {
    TIFFSetErrorHandler(NULL);
    TIFFSetWarningHandler(NULL);
}
