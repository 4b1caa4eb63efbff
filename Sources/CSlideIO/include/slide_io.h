// slide_io.h: the parts of libtiff and HDF5 that Swift cannot call directly — libtiff's variadic
// field setters and HDF5's type and property identifiers, which are macros. Every function
// reports failure as 0 (or a negative id) with a message in `error`; nothing prints or exits.
#ifndef SMIL_SLIDE_IO_H
#define SMIL_SLIDE_IO_H

#include <stdint.h>

/// One pyramid level: interleaved 8-bit RGB, `width * height * 3` bytes.
typedef struct {
    const unsigned char *rgb;
    int width;
    int height;
} smil_tiff_image;

/// Writes a tiled pyramidal TIFF: `levels[0]` as the full-resolution directory (carrying
/// `description` as its ImageDescription, when given), each later level as a reduced-resolution
/// tiled directory, and `thumbnail` (when given) as a stripped directory right after level 0, where
/// Aperio files keep theirs. Tiles are `tile_size` square (a multiple of 16), JPEG at
/// `jpeg_quality` (1-100) or Deflate (lossless) when it is 0. `pixels_per_cm`, when positive,
/// becomes the resolution tags of level 0. Returns 1, or 0 with a message.
int smil_tiff_write_pyramid(const char *path, const smil_tiff_image *levels, int count,
                            const smil_tiff_image *thumbnail, int tile_size, int jpeg_quality,
                            const char *description, double pixels_per_cm,
                            char *error, int error_size);

/// Silences libtiff's process-wide error and warning handlers, which print to stderr. OpenSlide
/// reads TIFFs through libtiff and reports failures itself; smil's own writer uses per-file
/// handlers, which these leave alone.
void smil_tiff_quiet(void);

/// HDF5 element types the wrappers read and write.
enum { SMIL_H5_F32 = 0, SMIL_H5_F64 = 1, SMIL_H5_I64 = 2, SMIL_H5_I32 = 3, SMIL_H5_U8 = 4 };

/// Opens (mode 0 read, 1 read-write) or creates (mode 2, truncating) an HDF5 file. Returns the
/// file id, or a negative value with a message.
int64_t smil_h5_open(const char *path, int mode, char *error, int error_size);
int smil_h5_close(int64_t file);

/// Creates dataset `name` (rank <= 8) and writes `data` (`type`, row-major). Its first dimension is
/// unlimited and it is chunked by `chunk_rows` rows, as h5py writes resizable datasets, so a later
/// writer may append. Returns 1, or 0 with a message.
int smil_h5_write_dataset(int64_t file, const char *name, int type, int rank, const int64_t *dims,
                          const void *data, int64_t chunk_rows, char *error, int error_size);

/// Appends rows to an existing dataset whose trailing dimensions match. Returns 1 or 0.
int smil_h5_append_rows(int64_t file, const char *name, int type, int64_t rows, const void *data,
                        char *error, int error_size);

/// Whether `name` exists and is a dataset: 1 yes, 0 no.
int smil_h5_has_dataset(int64_t file, const char *name);

/// A dataset's shape and element kind (`is_float` 1 for floating point, 0 for integers,
/// -1 for anything else, `element_size` in bytes). Returns its rank (0-8), or -1 with a message.
int smil_h5_dataset_shape(int64_t file, const char *name, int64_t *dims, int *is_float,
                          int *element_size, char *error, int error_size);

/// Reads a whole dataset converted to `type` into `out` (sized by the caller from the shape).
int smil_h5_read_dataset(int64_t file, const char *name, int type, void *out,
                         char *error, int error_size);

/// Writes a numeric attribute on object `object` ("/" for the file): `count` values, or a
/// scalar when `count` is 0. Replaces an attribute of the same name.
int smil_h5_write_attribute(int64_t file, const char *object, const char *name, int type,
                            int64_t count, const void *data, char *error, int error_size);

/// Writes a UTF-8 string attribute, variable-length as h5py writes Python strings.
int smil_h5_write_string_attribute(int64_t file, const char *object, const char *name,
                                   const char *value, char *error, int error_size);

/// The names of an object's attributes, each ending in '\n', into `out`. Returns the bytes
/// needed (call again with a larger buffer when it exceeds `out_size`), or -1 with a message.
int64_t smil_h5_attribute_names(int64_t file, const char *object, char *out, int64_t out_size,
                                char *error, int error_size);

/// An attribute's kind: 0 integer, 1 float, 2 string, -1 other; its element count (1 for scalars
/// and strings). Returns 1, or 0 with a message.
int smil_h5_attribute_info(int64_t file, const char *object, const char *name, int *kind,
                           int64_t *count, char *error, int error_size);

/// Reads a numeric attribute as float64 values.
int smil_h5_read_attribute(int64_t file, const char *object, const char *name, double *out,
                           char *error, int error_size);

/// Reads a string attribute (fixed or variable length). Returns the bytes needed including the
/// terminating zero, or -1 with a message.
int64_t smil_h5_read_string_attribute(int64_t file, const char *object, const char *name,
                                      char *out, int64_t out_size, char *error, int error_size);

/// The names of the datasets directly under the root group, each ending in '\n'. Returns the
/// bytes needed, or -1 with a message.
int64_t smil_h5_dataset_names(int64_t file, char *out, int64_t out_size, char *error, int error_size);

#endif
