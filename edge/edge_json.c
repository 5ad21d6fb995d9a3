#include "edge_json.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

//  Nesting depth of JSON text without parsing it, so a deep bomb never reaches the parser.
static int
s_depth(const char *buf, size_t len)
{
    int depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else
            if (c == '"')
                in_str = false;
        }
        else
        if (c == '"')
            in_str = true;
        else
        if (c == '{' || c == '[') {
            if (++depth > max)
                max = depth;
        }
        else
        if (c == '}' || c == ']')
            depth--;
    }
    return max;
}

static int
s_pack(msgpack_packer *pk, json_t *j)
{
    switch (json_typeof(j)) {
        case JSON_OBJECT: {
            msgpack_pack_map(pk, json_object_size(j));
            const char *key;
            json_t *v;
            json_object_foreach(j, key, v) {
                mc_pack_cstr(pk, key);
                if (s_pack(pk, v))
                    return -1;
            }
            return 0;
        }
        case JSON_ARRAY: {
            msgpack_pack_array(pk, json_array_size(j));
            size_t i;
            json_t *v;
            json_array_foreach(j, i, v)
                if (s_pack(pk, v))
                    return -1;
            return 0;
        }
        case JSON_STRING:
            if (json_string_length(j) > EDGE_JSON_STRING_MAX)
                return -1;
            mc_pack_str(pk, json_string_value(j), json_string_length(j));
            return 0;
        case JSON_INTEGER:
            msgpack_pack_int64(pk, json_integer_value(j));
            return 0;
        case JSON_REAL:
            msgpack_pack_double(pk, json_real_value(j));
            return 0;
        case JSON_TRUE:
            msgpack_pack_true(pk);
            return 0;
        case JSON_FALSE:
            msgpack_pack_false(pk);
            return 0;
        case JSON_NULL:
            msgpack_pack_nil(pk);
            return 0;
    }
    return -1;
}

int
edge_json_to_msgpack(const char *buf, size_t len, msgpack_sbuffer *out, char *err, size_t errsz)
{
    if (s_depth(buf, len) > EDGE_JSON_DEPTH) {
        snprintf(err, errsz, "JSON nests deeper than %d levels", EDGE_JSON_DEPTH);
        return EDGE_JSON_LIMIT;
    }
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        snprintf(err, errsz, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        return EDGE_JSON_MALFORMED;
    }
    int rc = 0;
    if (!json_is_object(root)) {
        snprintf(err, errsz, "the body must be a JSON object");
        rc = EDGE_JSON_NOT_OBJECT;
    }
    else {
        msgpack_packer pk;
        msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
        if (s_pack(&pk, root)) {
            snprintf(err, errsz, "a string is longer than %d bytes", EDGE_JSON_STRING_MAX);
            rc = EDGE_JSON_LIMIT;
        }
    }
    json_decref(root);
    return rc;
}
