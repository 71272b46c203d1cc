/*
 * compress.c -- value compression: zstd, lz4, zlib behind one interface.
 *
 * A compressed value is stored as
 *
 *   +----------------+---------------------------+
 *   | u32 orig len LE| codec output              |
 *   +----------------+---------------------------+
 *
 * so every codec decompresses into a buffer of the exact size. Compression
 * that does not shrink the value is reported as a failure and the caller
 * stores the value as it is.
 */
#include <lz4.h>
#include <lz4hc.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "core/core.h"

#define HDR 4u

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = v & 0xff;
    p[1] = (v >> 8) & 0xff;
    p[2] = (v >> 16) & 0xff;
    p[3] = v >> 24;
}

static uint32_t get32(const unsigned char *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

size_t core_compressed_len(const void *src, size_t slen)
{
    return slen < HDR ? 0 : get32(src);
}

int core_compress(enum core_codec codec, int level, const void *src, size_t slen,
                  void **dst, size_t *dlen)
{
    size_t bound;
    if (slen > UINT32_MAX || slen > (size_t)INT32_MAX) return -1;
    switch (codec) {
    case CORE_CODEC_ZSTD:
        bound = ZSTD_compressBound(slen);
        break;
    case CORE_CODEC_LZ4:
        bound = (size_t)LZ4_compressBound((int)slen);
        break;
    case CORE_CODEC_ZLIB:
        bound = compressBound((uLong)slen);
        break;
    default:
        return -1;
    }
    unsigned char *out = malloc(HDR + bound);
    if (out == NULL) return -1;
    size_t n = 0;
    switch (codec) {
    case CORE_CODEC_ZSTD: {
        size_t r = ZSTD_compress(out + HDR, bound, src, slen,
                                 level ? level : ZSTD_CLEVEL_DEFAULT);
        if (ZSTD_isError(r)) goto fail;
        n = r;
        break;
    }
    case CORE_CODEC_LZ4: {
        int r =
            level >= LZ4HC_CLEVEL_MIN
                ? LZ4_compress_HC(src, (char *)out + HDR, (int)slen, (int)bound, level)
                : LZ4_compress_default(src, (char *)out + HDR, (int)slen, (int)bound);
        if (r <= 0) goto fail;
        n = (size_t)r;
        break;
    }
    case CORE_CODEC_ZLIB: {
        uLongf d = (uLongf)bound;
        if (compress2(out + HDR, &d, src, (uLong)slen,
                      level ? level : Z_DEFAULT_COMPRESSION) != Z_OK)
            goto fail;
        n = d;
        break;
    }
    default:
        goto fail;
    }
    if (HDR + n >= slen) goto fail; /* no gain: store it as it is */
    put32(out, (uint32_t)slen);
    *dst = out;
    *dlen = HDR + n;
    return 0;
fail:
    free(out);
    return -1;
}

int core_decompress(enum core_codec codec, const void *src, size_t slen, void *dst,
                    size_t dlen)
{
    const unsigned char *in = src;
    if (slen < HDR || get32(in) != dlen) return -1;
    in += HDR;
    slen -= HDR;
    switch (codec) {
    case CORE_CODEC_ZSTD: {
        size_t r = ZSTD_decompress(dst, dlen, in, slen);
        return ZSTD_isError(r) || r != dlen ? -1 : 0;
    }
    case CORE_CODEC_LZ4: {
        int r = LZ4_decompress_safe((const char *)in, dst, (int)slen, (int)dlen);
        return r < 0 || (size_t)r != dlen ? -1 : 0;
    }
    case CORE_CODEC_ZLIB: {
        uLongf d = (uLongf)dlen;
        return uncompress(dst, &d, in, (uLong)slen) != Z_OK || d != dlen ? -1 : 0;
    }
    default:
        return -1;
    }
}
