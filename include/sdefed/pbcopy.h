/* include/sdefed/pbcopy.h — deep copies of protobuf-c messages.
 *
 * Messages handed to a callback are freed when it returns; code that keeps
 * one (a reply, a spec for the life of a query) takes a copy. Packing and
 * unpacking gives a copy with protobuf-c's own ownership rule, so every
 * copy is freed the same way, whatever built the original.
 */
#ifndef SDEFED_PBCOPY_H
#define SDEFED_PBCOPY_H

#include <protobuf-c/protobuf-c.h>

/* A copy of m, freed with protobuf_c_message_free_unpacked(copy, NULL)
 * (or the message type's own __free_unpacked). NULL on ENOMEM. */
ProtobufCMessage *pb_copy(const ProtobufCMessage *m);

#endif
