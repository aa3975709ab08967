/* tests/fuzz/fuzz_frame.c — libFuzzer driver for the frame decoder + Envelope.
 *
 * The input is a sequence of (chunk length byte, chunk bytes) pairs: each
 * chunk is fed to a frame_decoder as the network would deliver it, and every
 * whole frame is unpacked as an Envelope, exactly like lib/conn.c does. The
 * first byte's low bit raises the cap to FRAME_MAX_DEFAULT after the first
 * frame, as authentication would.
 */
#include <stddef.h>
#include <stdint.h>

#include "sdefed/frame.h"
#include "sdefed.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int raise = data[0] & 1;
    data++;
    size--;
    frame_decoder d;
    frame_decoder_init(&d, FRAME_MAX_PREAUTH);
    int frames = 0;
    while (size > 0) {
        size_t n = (size_t)data[0] + 1;
        data++;
        size--;
        if (n > size)
            n = size;
        if (frame_decoder_feed(&d, data, n) != 0)
            break;
        data += n;
        size -= n;
        const uint8_t *p;
        size_t len;
        int r;
        while ((r = frame_decoder_next(&d, &p, &len)) == 1) {
            if (len > d.max_payload)
                __builtin_trap();
            Sdefed__Envelope *env = sdefed__envelope__unpack(NULL, len, p);
            if (env)
                sdefed__envelope__free_unpacked(env, NULL);
            if (++frames == 1 && raise)
                frame_decoder_set_max(&d, FRAME_MAX_DEFAULT);
        }
        if (r < 0)
            break;
        if (frame_decoder_pending(&d) > FRAME_HEADER_LEN + d.max_payload + 256)
            __builtin_trap();
    }
    frame_decoder_free(&d);
    return 0;
}
