/* SPDX-License-Identifier: MIT */
/* yaml_int.h -- the bounded whole-file read the spec and config loaders share. */
#ifndef TRAILHOOK_YAML_INT_H
#define TRAILHOOK_YAML_INT_H

#include <stddef.h>

#include "trailhook/err.h"

/**
 * Reads a whole file into memory, NUL-terminated (the NUL is not counted in @p len).
 * @param[in]  path   file to read
 * @param[in]  max    largest size accepted, in bytes
 * @param[out] data   new buffer, free with free(); NULL on failure
 * @param[out] len    bytes read
 * @param[out] errnum errno of the failing call for TH_EIO, else 0
 * @return TH_OK, TH_EIO (unreadable), TH_ETOOBIG (larger than @p max).
 */
enum th_err th_yaml_read_file(const char *path, size_t max, char **data, size_t *len, int *errnum);

#endif
