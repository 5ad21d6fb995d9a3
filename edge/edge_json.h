/*  edge_json: JSON bodies to msgpack on the way in, msgpack replies to JSON on the way out.

    Parsing is jansson's; the limits are ours, checked before jansson allocates anything deep:
    nesting at most EDGE_JSON_DEPTH, strings at most EDGE_JSON_STRING_MAX bytes. */
#ifndef EDGE_JSON_H
#define EDGE_JSON_H

#include "mc_json.h"
#include "mc_msgpack.h"

#define EDGE_JSON_DEPTH 32
#define EDGE_JSON_STRING_MAX (256 * 1024)

#define EDGE_JSON_MALFORMED -1  //  not JSON: 400
#define EDGE_JSON_NOT_OBJECT -2 //  JSON, but not an object: 422
#define EDGE_JSON_LIMIT -3      //  too deep or a string too long: 400

//  Parses len bytes of JSON into one msgpack map in out. err receives a short reason.
int edge_json_to_msgpack(const char *buf, size_t len, msgpack_sbuffer *out, char *err, size_t errsz);


#endif
