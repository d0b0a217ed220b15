/* SPDX-License-Identifier: MIT */
/*
 * hash.c -- SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104), hex, constant-time comparison and
 * kernel randomness.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "trailhook/hash.h"

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

static void compress(uint32_t state[8], const unsigned char block[64])
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t)block[i * 4] << 24 | (uint32_t)block[i * 4 + 1] << 16 |
               (uint32_t)block[i * 4 + 2] << 8 | (uint32_t)block[i * 4 + 3];
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 =
            h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

void th_sha256_init(struct th_sha256 *ctx)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(ctx->state, iv, sizeof(iv));
    ctx->bytes = 0;
    ctx->used = 0;
}

void th_sha256_update(struct th_sha256 *ctx, const void *data, size_t len)
{
    const unsigned char *p = data;
    ctx->bytes += len;
    while (len > 0) {
        size_t take = 64 - ctx->used;
        if (take > len) {
            take = len;
        }
        memcpy(ctx->block + ctx->used, p, take);
        ctx->used += take;
        p += take;
        len -= take;
        if (ctx->used == 64) {
            compress(ctx->state, ctx->block);
            ctx->used = 0;
        }
    }
}

void th_sha256_final(struct th_sha256 *ctx, unsigned char out[TH_SHA256_LEN])
{
    uint64_t bits = ctx->bytes * 8;
    unsigned char pad = 0x80;
    th_sha256_update(ctx, &pad, 1);
    pad = 0;
    while (ctx->used != 56) {
        th_sha256_update(ctx, &pad, 1);
    }
    unsigned char len_be[8];
    for (int i = 0; i < 8; i++) {
        len_be[i] = (unsigned char)(bits >> (56 - 8 * i));
    }
    th_sha256_update(ctx, len_be, 8);
    for (int i = 0; i < 8; i++) {
        out[i * 4] = (unsigned char)(ctx->state[i] >> 24);
        out[i * 4 + 1] = (unsigned char)(ctx->state[i] >> 16);
        out[i * 4 + 2] = (unsigned char)(ctx->state[i] >> 8);
        out[i * 4 + 3] = (unsigned char)ctx->state[i];
    }
}

void th_sha256(const void *data, size_t len, unsigned char out[TH_SHA256_LEN])
{
    struct th_sha256 ctx;
    th_sha256_init(&ctx);
    th_sha256_update(&ctx, data, len);
    th_sha256_final(&ctx, out);
}

void th_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                    unsigned char out[TH_SHA256_LEN])
{
    unsigned char block[64] = {0};
    unsigned char pad[64];
    unsigned char inner[TH_SHA256_LEN];
    struct th_sha256 ctx;

    /* RFC 2104: a key longer than the block is replaced by its digest, a shorter one is
     * zero-padded to the block. */
    if (keylen > sizeof(block)) {
        th_sha256(key, keylen, block);
    } else if (keylen > 0) {
        memcpy(block, key, keylen);
    }
    for (size_t i = 0; i < sizeof(pad); i++) {
        pad[i] = (unsigned char)(block[i] ^ 0x36);
    }
    th_sha256_init(&ctx);
    th_sha256_update(&ctx, pad, sizeof(pad));
    th_sha256_update(&ctx, data, len);
    th_sha256_final(&ctx, inner);
    for (size_t i = 0; i < sizeof(pad); i++) {
        pad[i] = (unsigned char)(block[i] ^ 0x5c);
    }
    th_sha256_init(&ctx);
    th_sha256_update(&ctx, pad, sizeof(pad));
    th_sha256_update(&ctx, inner, sizeof(inner));
    th_sha256_final(&ctx, out);
}

void th_hex(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

int th_hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

bool th_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    unsigned char da[TH_SHA256_LEN];
    unsigned char db[TH_SHA256_LEN];
    unsigned char diff = 0;
    /* Hashing first makes the comparison independent of where or whether lengths differ. */
    th_sha256(a, alen, da);
    th_sha256(b, blen, db);
    for (size_t i = 0; i < TH_SHA256_LEN; i++) {
        diff |= (unsigned char)(da[i] ^ db[i]);
    }
    return diff == 0;
}

bool th_rand_bytes(void *out, size_t len)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    unsigned char *p = out;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n <= 0) {
            close(fd);
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    close(fd);
    return true;
}
