#include "mc_json.h"

#include <inttypes.h>
#include <stdio.h>

void
mc_json_write_str(msgpack_sbuffer *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
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
