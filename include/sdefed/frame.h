/* include/sdefed/frame.h — length-prefixed framing of protocol messages.
 *
 * A frame is a 4-byte big-endian payload length followed by the payload (one
 * serialized Envelope). The decoder is a pure byte-stream parser: it checks
 * every length prefix against a hard cap BEFORE allocating anything, so a
 * hostile "100 MiB" prefix costs four bytes of memory, not 100 MiB. Its buffer
 * never holds more than one capped frame plus the last chunk fed in.
 */
#ifndef SDEFED_FRAME_H
#define SDEFED_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "sdefed/err.h"

#define FRAME_HEADER_LEN 4
#define FRAME_MAX_DEFAULT ((size_t)4 << 20)   /* after the Hello handshake */
#define FRAME_MAX_PREAUTH ((size_t)64 << 10)  /* before it */

typedef struct frame_decoder {
    uint8_t *buf;        /* buffered bytes, owned */
    size_t len;          /* bytes in buf */
    size_t cap;          /* allocated size of buf */
    size_t off;          /* start of the unconsumed bytes */
    size_t max_payload;  /* hard cap on one frame's payload */
} frame_decoder;

/* Initialise an empty decoder with a payload cap (bytes). Never fails. */
void frame_decoder_init(frame_decoder *d, size_t max_payload);

/* Change the cap (e.g. raise it once the peer is authenticated). Frames
 * already buffered are re-checked against the new cap on the next call. */
void frame_decoder_set_max(frame_decoder *d, size_t max_payload);

/* Release the buffer. The decoder may be re-initialised afterwards. */
void frame_decoder_free(frame_decoder *d);

/* Append n bytes received from the peer.
 * Returns 0, SDF_ENOMEM, or SDF_EFRAME_TOO_BIG when the buffered header
 * already announces a frame above the cap (the stream is then unusable). */
int frame_decoder_feed(frame_decoder *d, const void *data, size_t n) SDF_MUSTCHECK;

/* Take the next whole frame.
 * Returns 1 and points *payload and *len at it (valid until the next feed or
 * next call), 0 when more bytes are needed, or SDF_EFRAME_TOO_BIG. */
int frame_decoder_next(frame_decoder *d, const uint8_t **payload, size_t *len) SDF_MUSTCHECK;

/* Bytes buffered but not yet returned as frames. */
size_t frame_decoder_pending(const frame_decoder *d);

/* Write the 4-byte big-endian header for a payload of len bytes into hdr.
 * Returns 0 or SDF_EFRAME_TOO_BIG if len > max_payload. */
int frame_header_write(uint8_t hdr[FRAME_HEADER_LEN], size_t len, size_t max_payload) SDF_MUSTCHECK;

#endif
