/* SPDX-License-Identifier: MIT */
/* err.c -- descriptions of trailhook's error codes. */
#include "trailhook/err.h"

const char *th_strerror(enum th_err err)
{
    switch (err) {
    case TH_OK:
        return "success";
    case TH_ENOMEM:
        return "out of memory";
    case TH_EINVAL:
        return "invalid value";
    case TH_EPARSE:
        return "could not be parsed";
    case TH_EIO:
        return "input/output error";
    case TH_ETIMEOUT:
        return "timed out";
    case TH_ETEMP:
        return "temporary failure";
    case TH_EPERM:
        return "permanent failure";
    case TH_ETOOBIG:
        return "limit exceeded";
    case TH_ENOTFOUND:
        return "not found";
    case TH_EFULL:
        return "queue full";
    case TH_EUNSUPPORTED:
        return "unsupported";
    case TH_EAUTH:
        return "authentication failed";
    }
    return "unknown error";
}
