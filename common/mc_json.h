/*  mc_json: JSON text to msgpack (HTTP bodies, Kafka record values), and msgpack objects to JSON
    text (HTTP replies, Kafka record values).

    Parsing is jansson's; the limits are ours, checked before jansson allocates anything deep:
    nesting at most MC_JSON_DEPTH, strings at most MC_JSON_STRING_MAX bytes. */
#ifndef MC_JSON_H
#define MC_JSON_H

#include "mc_msgpack.h"

//  Appends o as JSON text to out (maps with non-string keys get "?" keys; ext types are null).
void mc_json_write(msgpack_sbuffer *out, const msgpack_object *o);

//  Appends s as a JSON string (quoted, escaped).
void mc_json_write_str(msgpack_sbuffer *out, const char *s, size_t len);

#define MC_JSON_DEPTH 32
#define MC_JSON_STRING_MAX (256 * 1024)

#define MC_JSON_MALFORMED -1    //  not JSON: 400
#define MC_JSON_NOT_OBJECT -2   //  JSON, but not an object: 422
#define MC_JSON_LIMIT -3        //  too deep or a string too long: 400

//  Parses len bytes of JSON into one msgpack map in out. err receives a short reason.
int mc_json_parse(const char *buf, size_t len, msgpack_sbuffer *out, char *err, size_t errsz);

#endif
