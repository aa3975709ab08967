/* lib/frame.c — length-prefixed framing of protocol messages.
 *
 * The decoder turns an untrusted byte stream into whole frames (4-byte
 * big-endian length + payload). Every length prefix is compared with the
 * decoder's cap before a single byte is reserved for the payload, so a
 * hostile prefix costs four bytes. Consumed bytes are compacted away at the
 * start of the next feed, which keeps returned payload pointers valid until
 * then; the buffer therefore never holds more than one capped frame plus the
 * chunk just fed in (given the caller drains frames after each feed).
 */
#include "sdefed/frame.h"

#include <stdlib.h>
#include <string.h>

/* Buffers above this size are released once they are empty, so one big
 * frame does not pin megabytes per idle connection. */
#define FRAME_KEEP_BUF ((size_t)64 << 10)

void frame_decoder_init(frame_decoder *d, size_t max_payload)
{
    d->buf = NULL;
    d->len = 0;
    d->cap = 0;
    d->off = 0;
    d->max_payload = max_payload;
}

void frame_decoder_set_max(frame_decoder *d, size_t max_payload)
{
    d->max_payload = max_payload;
}

void frame_decoder_free(frame_decoder *d)
{
    free(d->buf);
    frame_decoder_init(d, d->max_payload);
}

size_t frame_decoder_pending(const frame_decoder *d)
{
    return d->len - d->off;
}

static uint32_t read_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* 1 if a whole header is buffered and announces more than the cap. */
static int head_too_big(const frame_decoder *d)
{
    if (frame_decoder_pending(d) < FRAME_HEADER_LEN)
        return 0;
    return (size_t)read_be32(d->buf + d->off) > d->max_payload;
}

int frame_decoder_feed(frame_decoder *d, const void *data, size_t n)
{
    /* Compact: drop what earlier frame_decoder_next calls consumed. */
    if (d->off > 0) {
        size_t rest = d->len - d->off;
        if (rest > 0)
            memmove(d->buf, d->buf + d->off, rest);
        d->len = rest;
        d->off = 0;
    }
    if (d->len == 0 && d->cap > FRAME_KEEP_BUF) {
        free(d->buf);
        d->buf = NULL;
        d->cap = 0;
    }
    /* A header already known to be oversized poisons the stream: refuse
     * before buffering anything more. */
    if (head_too_big(d))
        return SDF_EFRAME_TOO_BIG;
    if (n == 0)
        return 0;
    if (n > SIZE_MAX - d->len)
        return SDF_ENOMEM;

    /* Never buffer more than the first header lets through: at most one
     * capped frame plus this chunk. When the header is not complete yet,
     * only up to 4 bytes are pending before this chunk, so the bound holds
     * too; the header inside the chunk is checked right after copying. */
    size_t need = d->len + n;
    if (need > d->cap) {
        size_t ncap = d->cap ? d->cap : 4096;
        while (ncap < need && ncap <= SIZE_MAX / 2)
            ncap *= 2;
        if (ncap < need)
            ncap = need;
        /* Do not let doubling overshoot what one frame plus the chunk needs. */
        size_t bound = FRAME_HEADER_LEN + d->max_payload;
        if (bound < d->max_payload || bound > SIZE_MAX - n)
            bound = SIZE_MAX;
        else
            bound += n;
        if (ncap > bound && bound >= need)
            ncap = bound;
        uint8_t *nb = realloc(d->buf, ncap);
        if (!nb)
            return SDF_ENOMEM;
        d->buf = nb;
        d->cap = ncap;
    }
    memcpy(d->buf + d->len, data, n);
    d->len += n;
    return head_too_big(d) ? SDF_EFRAME_TOO_BIG : 0;
}

int frame_decoder_next(frame_decoder *d, const uint8_t **payload, size_t *len)
{
    size_t avail = frame_decoder_pending(d);
    if (avail < FRAME_HEADER_LEN)
        return 0;
    size_t plen = read_be32(d->buf + d->off);
    if (plen > d->max_payload)
        return SDF_EFRAME_TOO_BIG;
    if (avail - FRAME_HEADER_LEN < plen)
        return 0;
    *payload = d->buf + d->off + FRAME_HEADER_LEN;
    *len = plen;
    d->off += FRAME_HEADER_LEN + plen;
    if (d->off == d->len) {
        /* Everything consumed: restart at the front without moving bytes,
         * so *payload stays valid until the next feed. */
        d->off = 0;
        d->len = 0;
    }
    return 1;
}

int frame_header_write(uint8_t hdr[FRAME_HEADER_LEN], size_t len, size_t max_payload)
{
    if (len > max_payload || len > UINT32_MAX)
        return SDF_EFRAME_TOO_BIG;
    hdr[0] = (uint8_t)(len >> 24);
    hdr[1] = (uint8_t)(len >> 16);
    hdr[2] = (uint8_t)(len >> 8);
    hdr[3] = (uint8_t)len;
    return 0;
}
