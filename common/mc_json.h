/*  mc_json: msgpack objects to JSON text, for HTTP replies and Kafka record values. */
#ifndef MC_JSON_H
#define MC_JSON_H

#include "mc_msgpack.h"

//  Appends o as JSON text to out (maps with non-string keys get "?" keys; ext types are null).
void mc_json_write(msgpack_sbuffer *out, const msgpack_object *o);

//  Appends s as a JSON string (quoted, escaped).
void mc_json_write_str(msgpack_sbuffer *out, const char *s, size_t len);

#endif
