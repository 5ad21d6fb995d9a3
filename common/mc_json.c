#include "mc_json.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

void
mc_json_write_str(msgpack_sbuffer *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    //  msgpack-c decodes an empty string with a NULL pointer: s + 0 would be undefined
    if (len == 0) {
        msgpack_sbuffer_write(out, "\"\"", 2);
        return;
    }
    msgpack_sbuffer_write(out, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
            continue;
        msgpack_sbuffer_write(out, s + start, i - start);
        char esc[7] = { '\\', 0 };
        size_t n = 2;
        switch (c) {
            case '"': esc[1] = '"'; break;
            case '\\': esc[1] = '\\'; break;
            case '\n': esc[1] = 'n'; break;
            case '\r': esc[1] = 'r'; break;
            case '\t': esc[1] = 't'; break;
            default:
                esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
                esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
                n = 6;
        }
        msgpack_sbuffer_write(out, esc, n);
        start = i + 1;
    }
    msgpack_sbuffer_write(out, s + start, len - start);
    msgpack_sbuffer_write(out, "\"", 1);
}

void
mc_json_write(msgpack_sbuffer *out, const msgpack_object *o)
{
    char num[32];
    int n;
    switch (o->type) {
        case MSGPACK_OBJECT_NIL:
            msgpack_sbuffer_write(out, "null", 4);
            break;
        case MSGPACK_OBJECT_BOOLEAN:
            if (o->via.boolean)
                msgpack_sbuffer_write(out, "true", 4);
            else
                msgpack_sbuffer_write(out, "false", 5);
            break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            n = snprintf(num, sizeof num, "%" PRIu64, o->via.u64);
            msgpack_sbuffer_write(out, num, (size_t) n);
            break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            n = snprintf(num, sizeof num, "%" PRId64, o->via.i64);
            msgpack_sbuffer_write(out, num, (size_t) n);
            break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            n = snprintf(num, sizeof num, "%.17g", o->via.f64);
            msgpack_sbuffer_write(out, num, (size_t) n);
            break;
        case MSGPACK_OBJECT_STR:
            mc_json_write_str(out, o->via.str.ptr, o->via.str.size);
            break;
        case MSGPACK_OBJECT_ARRAY:
            msgpack_sbuffer_write(out, "[", 1);
            for (uint32_t i = 0; i < o->via.array.size; i++) {
                if (i)
                    msgpack_sbuffer_write(out, ",", 1);
                mc_json_write(out, &o->via.array.ptr[i]);
            }
            msgpack_sbuffer_write(out, "]", 1);
            break;
        case MSGPACK_OBJECT_MAP:
            msgpack_sbuffer_write(out, "{", 1);
            for (uint32_t i = 0; i < o->via.map.size; i++) {
                if (i)
                    msgpack_sbuffer_write(out, ",", 1);
                const msgpack_object *k = &o->via.map.ptr[i].key;
                if (k->type == MSGPACK_OBJECT_STR)
                    mc_json_write_str(out, k->via.str.ptr, k->via.str.size);
                else
                    mc_json_write_str(out, "?", 1);
                msgpack_sbuffer_write(out, ":", 1);
                mc_json_write(out, &o->via.map.ptr[i].val);
            }
            msgpack_sbuffer_write(out, "}", 1);
            break;
        default:
            msgpack_sbuffer_write(out, "null", 4);
    }
}

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
            if (json_string_length(j) > MC_JSON_STRING_MAX)
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
mc_json_parse(const char *buf, size_t len, msgpack_sbuffer *out, char *err, size_t errsz)
{
    if (s_depth(buf, len) > MC_JSON_DEPTH) {
        snprintf(err, errsz, "JSON nests deeper than %d levels", MC_JSON_DEPTH);
        return MC_JSON_LIMIT;
    }
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        snprintf(err, errsz, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        return MC_JSON_MALFORMED;
    }
    int rc = 0;
    if (!json_is_object(root)) {
        snprintf(err, errsz, "the body must be a JSON object");
        rc = MC_JSON_NOT_OBJECT;
    }
    else {
        msgpack_packer pk;
        msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
        if (s_pack(&pk, root)) {
            snprintf(err, errsz, "a string is longer than %d bytes", MC_JSON_STRING_MAX);
            rc = MC_JSON_LIMIT;
        }
    }
    json_decref(root);
    return rc;
}
