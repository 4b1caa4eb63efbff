// jpeg_codec.c: see jpeg_codec.h. libjpeg reports errors through error_exit, which must not
// return; here it jumps back to the entry point, which cleans up and returns the message.
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include "jpeg_codec.h"

struct smil_error {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static void smil_error_exit(j_common_ptr info) {
    struct smil_error *e = (struct smil_error *)info->err;
    (*info->err->format_message)(info, e->message);
    longjmp(e->jump, 1);
}

static void smil_quiet(j_common_ptr info, int level) { (void)info; (void)level; }

int smil_jpeg_decode(const unsigned char *data, size_t size, int *width, int *height,
                     unsigned char **pixels, char *error, int error_size) {
    struct jpeg_decompress_struct info;
    struct smil_error err;
    unsigned char *volatile out = NULL;
    info.err = jpeg_std_error(&err.manager);
    err.manager.error_exit = smil_error_exit;
    err.manager.emit_message = smil_quiet;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&info);
        free(out);
        snprintf(error, error_size, "%s", err.message);
        return 0;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, (unsigned long)size);
    jpeg_read_header(&info, TRUE);
    info.out_color_space = JCS_RGB;
    jpeg_start_decompress(&info);
    size_t w = info.output_width, h = info.output_height;
    if (info.output_components != 3 || w == 0 || h == 0 || w * h > ((size_t)1 << 28)) {
        snprintf(error, error_size, "unsupported JPEG (%zu x %zu, %d components)", w, h, info.output_components);
        jpeg_destroy_decompress(&info);
        return 0;
    }
    out = malloc(w * h * 3);
    if (!out) {
        snprintf(error, error_size, "out of memory for a %zu x %zu image", w, h);
        jpeg_destroy_decompress(&info);
        return 0;
    }
    while (info.output_scanline < info.output_height) {
        JSAMPROW row = out + (size_t)info.output_scanline * w * 3;
        jpeg_read_scanlines(&info, &row, 1);
    }
    jpeg_finish_decompress(&info);
    jpeg_destroy_decompress(&info);
    *width = (int)w;
    *height = (int)h;
    *pixels = out;
    return 1;
}

int smil_jpeg_encode(const unsigned char *pixels, int width, int height, int quality,
                     unsigned char **data, size_t *size, char *error, int error_size) {
    struct jpeg_compress_struct info;
    struct smil_error err;
    unsigned char *out = NULL;
    unsigned long out_size = 0;
    info.err = jpeg_std_error(&err.manager);
    err.manager.error_exit = smil_error_exit;
    err.manager.emit_message = smil_quiet;
    if (setjmp(err.jump)) {
        jpeg_destroy_compress(&info);
        snprintf(error, error_size, "%s", err.message);
        return 0;
    }
    jpeg_create_compress(&info);
    jpeg_mem_dest(&info, &out, &out_size);
    info.image_width = (JDIMENSION)width;
    info.image_height = (JDIMENSION)height;
    info.input_components = 3;
    info.in_color_space = JCS_RGB;
    jpeg_set_defaults(&info);
    jpeg_set_quality(&info, quality, TRUE);
    jpeg_start_compress(&info, TRUE);
    while (info.next_scanline < info.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)info.next_scanline * (size_t)width * 3);
        jpeg_write_scanlines(&info, &row, 1);
    }
    jpeg_finish_compress(&info);
    jpeg_destroy_compress(&info);
    *data = out;
    *size = out_size;
    return 1;
}
