/* SPDX-License-Identifier: MIT */
/* hash.h -- SHA-256 and constant-time comparison, for alert ids and credentials. */
#ifndef TRAILHOOK_HASH_H
#define TRAILHOOK_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TH_SHA256_LEN 32

struct th_sha256 {
    uint32_t state[8];
    uint64_t bytes;
    unsigned char block[64];
    size_t used;
};

void th_sha256_init(struct th_sha256 *ctx);
void th_sha256_update(struct th_sha256 *ctx, const void *data, size_t len);
void th_sha256_final(struct th_sha256 *ctx, unsigned char out[TH_SHA256_LEN]);
/** One-shot SHA-256 of @p len bytes. */
void th_sha256(const void *data, size_t len, unsigned char out[TH_SHA256_LEN]);

/** HMAC-SHA256 (RFC 2104) of @p len bytes under @p key. */
void th_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                    unsigned char out[TH_SHA256_LEN]);

/** Lower-case hex of @p len bytes into @p out (2*len+1 bytes, NUL-terminated). */
void th_hex(const unsigned char *in, size_t len, char *out);

/** The value of hex digit @p c (either case), or -1 when it is not one. */
int th_hex_digit(char c);

/**
 * Compares two byte strings in constant time: both are hashed and the digests compared in
 * full, so the time reveals neither where they differ nor the expected length.
 * @return true when equal.
 */
bool th_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/** Fills @p out with @p len random bytes from the kernel. @return false on failure. */
bool th_rand_bytes(void *out, size_t len);

#endif
