// hdf5_io.c: datasets and attributes through HDF5's C API, as h5py lays them out, with HDF5's
// error stack turned into one message instead of printed.

#include "slide_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hdf5.h>

typedef struct {
    char *buffer;
    int size;
} message_sink;

// The innermost HDF5 error (the one that says what went wrong), after the caller's context.
static herr_t keep_innermost(unsigned n, const H5E_error2_t *e, void *user) {
    message_sink *sink = user;
    if (n == 0 && sink->size > 0) {
        size_t used = strlen(sink->buffer);
        if (used + 3 < (size_t)sink->size) {
            snprintf(sink->buffer + used, (size_t)sink->size - used, " (%s)", e->desc ? e->desc : "HDF5 error");
        }
    }
    return 0;
}

static void quiet(void) {
    static int done = 0;
    if (!done) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); done = 1; }
}

static void fail(char *error, int error_size, const char *what, const char *name) {
    if (error_size <= 0) return;
    snprintf(error, (size_t)error_size, "%s%s%s", what, name ? " " : "", name ? name : "");
    message_sink sink = { error, error_size };
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, keep_innermost, &sink);
    H5Eclear2(H5E_DEFAULT);
}

// HDF5 1.12 renamed the object-info and link-iteration calls; Debian 12 ships 1.10.
#if H5_VERSION_GE(1, 12, 0)
typedef H5O_info2_t object_info;
typedef H5L_info2_t link_info;
#define GET_INFO_BY_NAME(loc, name, info) H5Oget_info_by_name3(loc, name, info, H5O_INFO_BASIC, H5P_DEFAULT)
#define ITERATE_LINKS H5Literate2
#else
typedef H5O_info_t object_info;
typedef H5L_info_t link_info;
#define GET_INFO_BY_NAME(loc, name, info) H5Oget_info_by_name2(loc, name, info, H5O_INFO_BASIC, H5P_DEFAULT)
#define ITERATE_LINKS H5Literate
#endif

static hid_t memory_type(int type) {
    switch (type) {
    case SMIL_H5_F32: return H5T_NATIVE_FLOAT;
    case SMIL_H5_F64: return H5T_NATIVE_DOUBLE;
    case SMIL_H5_I64: return H5T_NATIVE_INT64;
    case SMIL_H5_I32: return H5T_NATIVE_INT32;
    case SMIL_H5_U8: return H5T_NATIVE_UINT8;
    default: return -1;
    }
}

// Little-endian file types, as h5py writes on x86.
static hid_t file_type(int type) {
    switch (type) {
    case SMIL_H5_F32: return H5T_IEEE_F32LE;
    case SMIL_H5_F64: return H5T_IEEE_F64LE;
    case SMIL_H5_I64: return H5T_STD_I64LE;
    case SMIL_H5_I32: return H5T_STD_I32LE;
    case SMIL_H5_U8: return H5T_STD_U8LE;
    default: return -1;
    }
}

int64_t smil_h5_open(const char *path, int mode, char *error, int error_size) {
    quiet();
    hid_t f;
    if (mode == 2) {
        f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    } else {
        if (H5Fis_hdf5(path) <= 0) {
            fail(error, error_size, "not an HDF5 file", NULL);
            return -1;
        }
        f = H5Fopen(path, mode == 1 ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
    }
    if (f < 0) fail(error, error_size, mode == 2 ? "cannot create the HDF5 file" : "cannot open the HDF5 file", NULL);
    return (int64_t)f;
}

int smil_h5_close(int64_t file) {
    return H5Fclose((hid_t)file) >= 0;
}

int smil_h5_write_dataset(int64_t file, const char *name, int type, int rank, const int64_t *dims,
                          const void *data, int64_t chunk_rows, char *error, int error_size) {
    quiet();
    if (rank < 1 || rank > 8 || memory_type(type) < 0) { fail(error, error_size, "bad rank or type for dataset", name); return 0; }
    hsize_t shape[8], maxshape[8], chunk[8];
    for (int i = 0; i < rank; i++) {
        shape[i] = (hsize_t)dims[i];
        maxshape[i] = (hsize_t)dims[i];
        chunk[i] = dims[i] > 0 ? (hsize_t)dims[i] : 1;
    }
    maxshape[0] = H5S_UNLIMITED;
    chunk[0] = (hsize_t)(chunk_rows > 0 ? chunk_rows : 1);
    if (H5Lexists((hid_t)file, name, H5P_DEFAULT) > 0 && H5Ldelete((hid_t)file, name, H5P_DEFAULT) < 0) {
        fail(error, error_size, "cannot replace dataset", name);
        return 0;
    }
    hid_t space = H5Screate_simple(rank, shape, maxshape);
    hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
    int ok = space >= 0 && plist >= 0 && H5Pset_chunk(plist, rank, chunk) >= 0;
    hid_t set = ok ? H5Dcreate2((hid_t)file, name, file_type(type), space, H5P_DEFAULT, plist, H5P_DEFAULT) : -1;
    ok = set >= 0 && (shape[0] == 0 || H5Dwrite(set, memory_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    if (!ok) fail(error, error_size, "cannot write dataset", name);
    if (set >= 0) H5Dclose(set);
    if (plist >= 0) H5Pclose(plist);
    if (space >= 0) H5Sclose(space);
    return ok;
}

int smil_h5_append_rows(int64_t file, const char *name, int type, int64_t rows, const void *data,
                        char *error, int error_size) {
    quiet();
    hid_t set = H5Dopen2((hid_t)file, name, H5P_DEFAULT);
    if (set < 0) { fail(error, error_size, "no dataset", name); return 0; }
    hid_t space = H5Dget_space(set);
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t shape[8], start[8] = {0}, count[8];
    int ok = rank >= 1 && rank <= 8 && H5Sget_simple_extent_dims(space, shape, NULL) >= 0;
    H5Sclose(space);
    if (ok) {
        hsize_t old = shape[0];
        shape[0] += (hsize_t)rows;
        ok = H5Dset_extent(set, shape) >= 0;
        hid_t file_space = ok ? H5Dget_space(set) : -1;
        for (int i = 0; i < rank; i++) count[i] = shape[i];
        start[0] = old;
        count[0] = (hsize_t)rows;
        ok = ok && file_space >= 0 && H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, NULL, count, NULL) >= 0;
        hid_t memory_space = ok ? H5Screate_simple(rank, count, NULL) : -1;
        ok = ok && memory_space >= 0 && H5Dwrite(set, memory_type(type), memory_space, file_space, H5P_DEFAULT, data) >= 0;
        if (memory_space >= 0) H5Sclose(memory_space);
        if (file_space >= 0) H5Sclose(file_space);
    }
    if (!ok) fail(error, error_size, "cannot append to dataset", name);
    H5Dclose(set);
    return ok;
}

int smil_h5_has_dataset(int64_t file, const char *name) {
    quiet();
    if (H5Lexists((hid_t)file, name, H5P_DEFAULT) <= 0) { H5Eclear2(H5E_DEFAULT); return 0; }
    object_info info;
    if (GET_INFO_BY_NAME((hid_t)file, name, &info) < 0) { H5Eclear2(H5E_DEFAULT); return 0; }
    return info.type == H5O_TYPE_DATASET;
}

int smil_h5_dataset_shape(int64_t file, const char *name, int64_t *dims, int *is_float,
                          int *element_size, char *error, int error_size) {
    quiet();
    if (!smil_h5_has_dataset(file, name)) { fail(error, error_size, "no dataset", name); return -1; }
    hid_t set = H5Dopen2((hid_t)file, name, H5P_DEFAULT);
    if (set < 0) { fail(error, error_size, "cannot open dataset", name); return -1; }
    hid_t space = H5Dget_space(set), type = H5Dget_type(set);
    int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    hsize_t shape[8];
    if (rank < 0 || rank > 8 || H5Sget_simple_extent_dims(space, shape, NULL) < 0) {
        fail(error, error_size, "unsupported shape (rank above 8) in dataset", name);
        rank = -1;
    } else {
        for (int i = 0; i < rank; i++) dims[i] = (int64_t)shape[i];
        H5T_class_t c = H5Tget_class(type);
        *is_float = c == H5T_FLOAT ? 1 : (c == H5T_INTEGER ? 0 : -1);
        *element_size = (int)H5Tget_size(type);
    }
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    H5Dclose(set);
    return rank;
}

int smil_h5_read_dataset(int64_t file, const char *name, int type, void *out, char *error, int error_size) {
    quiet();
    hid_t set = H5Dopen2((hid_t)file, name, H5P_DEFAULT);
    if (set < 0) { fail(error, error_size, "no dataset", name); return 0; }
    int ok = H5Dread(set, memory_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0;
    if (!ok) fail(error, error_size, "cannot read dataset", name);
    H5Dclose(set);
    return ok;
}

static hid_t open_object(int64_t file, const char *object) {
    return H5Oopen((hid_t)file, object && object[0] ? object : "/", H5P_DEFAULT);
}

int smil_h5_write_attribute(int64_t file, const char *object, const char *name, int type,
                            int64_t count, const void *data, char *error, int error_size) {
    quiet();
    hid_t o = open_object(file, object);
    if (o < 0) { fail(error, error_size, "no object", object); return 0; }
    if (H5Aexists(o, name) > 0) H5Adelete(o, name);
    hsize_t n = (hsize_t)count;
    hid_t space = count > 0 ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = space >= 0 ? H5Acreate2(o, name, file_type(type), space, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = a >= 0 && H5Awrite(a, memory_type(type), data) >= 0;
    if (!ok) fail(error, error_size, "cannot write attribute", name);
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    H5Oclose(o);
    return ok;
}

int smil_h5_write_string_attribute(int64_t file, const char *object, const char *name,
                                   const char *value, char *error, int error_size) {
    quiet();
    hid_t o = open_object(file, object);
    if (o < 0) { fail(error, error_size, "no object", object); return 0; }
    if (H5Aexists(o, name) > 0) H5Adelete(o, name);
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, type, &value) >= 0;
    if (!ok) fail(error, error_size, "cannot write attribute", name);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
    H5Oclose(o);
    return ok;
}

typedef struct {
    char *out;
    int64_t size;
    int64_t used;
} name_list;

static void append_name(name_list *list, const char *name) {
    int64_t n = (int64_t)strlen(name);
    if (list->used + n + 1 <= list->size) {
        memcpy(list->out + list->used, name, (size_t)n);
        list->out[list->used + n] = '\n';
    }
    list->used += n + 1;
}

static herr_t collect_attribute(hid_t o, const char *name, const H5A_info_t *info, void *user) {
    (void)o; (void)info;
    append_name(user, name);
    return 0;
}

int64_t smil_h5_attribute_names(int64_t file, const char *object, char *out, int64_t out_size,
                                char *error, int error_size) {
    quiet();
    hid_t o = open_object(file, object);
    if (o < 0) { fail(error, error_size, "no object", object); return -1; }
    name_list list = { out, out_size, 0 };
    hsize_t position = 0;
    int ok = H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_INC, &position, collect_attribute, &list) >= 0;
    if (!ok) fail(error, error_size, "cannot list the attributes of", object);
    H5Oclose(o);
    return ok ? list.used : -1;
}

int smil_h5_attribute_info(int64_t file, const char *object, const char *name, int *kind,
                           int64_t *count, char *error, int error_size) {
    quiet();
    hid_t a = H5Aopen_by_name((hid_t)file, object && object[0] ? object : "/", name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) { fail(error, error_size, "no attribute", name); return 0; }
    hid_t type = H5Aget_type(a), space = H5Aget_space(a);
    H5T_class_t c = H5Tget_class(type);
    *kind = c == H5T_INTEGER ? 0 : (c == H5T_FLOAT ? 1 : (c == H5T_STRING ? 2 : -1));
    hssize_t n = H5Sget_simple_extent_npoints(space);
    *count = c == H5T_STRING ? 1 : (int64_t)n;
    H5Sclose(space);
    H5Tclose(type);
    H5Aclose(a);
    return 1;
}

int smil_h5_read_attribute(int64_t file, const char *object, const char *name, double *out,
                           char *error, int error_size) {
    quiet();
    hid_t a = H5Aopen_by_name((hid_t)file, object && object[0] ? object : "/", name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) { fail(error, error_size, "no attribute", name); return 0; }
    int ok = H5Aread(a, H5T_NATIVE_DOUBLE, out) >= 0;
    if (!ok) fail(error, error_size, "cannot read attribute", name);
    H5Aclose(a);
    return ok;
}

int64_t smil_h5_read_string_attribute(int64_t file, const char *object, const char *name,
                                      char *out, int64_t out_size, char *error, int error_size) {
    quiet();
    hid_t a = H5Aopen_by_name((hid_t)file, object && object[0] ? object : "/", name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) { fail(error, error_size, "no attribute", name); return -1; }
    hid_t type = H5Aget_type(a);
    int64_t needed = -1;
    if (H5Tget_class(type) != H5T_STRING) {
        fail(error, error_size, "not a string attribute:", name);
    } else if (H5Tis_variable_str(type) > 0) {
        hid_t memory = H5Tcopy(H5T_C_S1);
        H5Tset_size(memory, H5T_VARIABLE);
        H5Tset_cset(memory, H5Tget_cset(type));
        char *value = NULL;
        if (H5Aread(a, memory, &value) >= 0 && value) {
            needed = (int64_t)strlen(value) + 1;
            if (needed <= out_size) memcpy(out, value, (size_t)needed);
            H5free_memory(value);
        } else {
            fail(error, error_size, "cannot read attribute", name);
        }
        H5Tclose(memory);
    } else {
        size_t size = H5Tget_size(type);
        needed = (int64_t)size + 1;
        if (needed <= out_size) {
            hid_t memory = H5Tcopy(H5T_C_S1);
            H5Tset_size(memory, size + 1);
            H5Tset_strpad(memory, H5T_STR_NULLTERM);
            if (H5Aread(a, memory, out) < 0) { fail(error, error_size, "cannot read attribute", name); needed = -1; }
            H5Tclose(memory);
        }
    }
    H5Tclose(type);
    H5Aclose(a);
    return needed;
}

static herr_t collect_dataset(hid_t group, const char *name, const link_info *info, void *user) {
    (void)info;
    object_info object;
    if (GET_INFO_BY_NAME(group, name, &object) >= 0 && object.type == H5O_TYPE_DATASET) {
        append_name(user, name);
    }
    return 0;
}

int64_t smil_h5_dataset_names(int64_t file, char *out, int64_t out_size, char *error, int error_size) {
    quiet();
    name_list list = { out, out_size, 0 };
    hsize_t position = 0;
    if (ITERATE_LINKS((hid_t)file, H5_INDEX_NAME, H5_ITER_INC, &position, collect_dataset, &list) < 0) {
        fail(error, error_size, "cannot list the datasets", NULL);
        return -1;
    }
    return list.used;
}
