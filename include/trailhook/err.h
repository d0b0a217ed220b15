/* SPDX-License-Identifier: MIT */
/* err.h -- the one error enumeration every fallible trailhook function returns. */
#ifndef TRAILHOOK_ERR_H
#define TRAILHOOK_ERR_H

enum th_err {
    TH_OK = 0,
    TH_ENOMEM,       /**< allocation failed */
    TH_EINVAL,       /**< invalid argument or value */
    TH_EPARSE,       /**< input could not be parsed */
    TH_EIO,          /**< read/write/store failure */
    TH_ETIMEOUT,     /**< deadline passed */
    TH_ETEMP,        /**< temporary failure: retry later */
    TH_EPERM,        /**< permanent failure: do not retry */
    TH_ETOOBIG,      /**< a configured size or count limit was reached */
    TH_ENOTFOUND,    /**< no such item */
    TH_EFULL,        /**< a bounded queue is full */
    TH_EUNSUPPORTED, /**< unsupported format, encoding or option */
    TH_EAUTH,        /**< missing or wrong credentials */
};

/**
 * Short English description of an error code.
 * @return a static string; never NULL.
 */
const char *th_strerror(enum th_err err);

#endif
