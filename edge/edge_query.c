#include "edge_query.h"

#include "mc_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int
s_hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

//  Decodes %XX and '+' in place; returns the new length, or -1 on a bad escape.
static long
s_url_decode(char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = s_hexval(s[i + 1]), lo = s_hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            s[o++] = (char) (hi << 4 | lo);
            i += 2;
        }
        else
            s[o++] = s[i] == '+' ? ' ' : s[i];
    }
    return (long) o;
}

void
edge_query_to_body(const char *qs, const mc_msgdef_t *def, msgpack_sbuffer *out, mc_errors_t *errs)
{
    char buf[EDGE_QUERY_MAX];
    if (qs && strlen(qs) >= sizeof buf) {
        mc_errors_add(errs, "", "the query string is longer than %d bytes", EDGE_QUERY_MAX - 1);
        return;
    }
    snprintf(buf, sizeof buf, "%s", qs ? qs : "");
    char *pairs[EDGE_QUERY_PARAMS];
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, "&", &save); tok; tok = strtok_r(NULL, "&", &save)) {
        if (!*tok)
            continue;
        if (n == EDGE_QUERY_PARAMS) {
            mc_errors_add(errs, "", "more than %d query parameters", EDGE_QUERY_PARAMS);
            return;
        }
        pairs[n++] = tok;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, n);
    for (size_t i = 0; i < n; i++) {
        char *eq = strchr(pairs[i], '=');
        char *val = eq ? eq + 1 : pairs[i] + strlen(pairs[i]);
        if (eq)
            *eq = 0;
        long klen = s_url_decode(pairs[i], strlen(pairs[i]));
        long vlen = s_url_decode(val, strlen(val));
        if (klen < 0 || vlen < 0) {
            mc_errors_add(errs, klen < 0 ? "?" : pairs[i], "has a malformed %%-escape");
            klen = klen < 0 ? 1 : klen;
            mc_pack_str(&pk, "?", 1);
            msgpack_pack_nil(&pk);
            continue;
        }
        pairs[i][klen] = 0;
        val[vlen] = 0;
        mc_pack_str(&pk, pairs[i], (size_t) klen);
        const mc_field_t *f = mc_schema_field(def, pairs[i], (size_t) klen);
        //  the edge sets internal members itself (a gathered list's "gather"): a client never does
        if (f && f->internal) {
            mc_errors_add(errs, pairs[i], "is not a known field");
            msgpack_pack_nil(&pk);
        }
        else
        if (f && f->type == MC_FT_INTEGER) {
            char *end;
            errno = 0;
            long long v = strtoll(val, &end, 10);
            if (!*val || *end || errno) {
                mc_errors_add(errs, pairs[i], "must be an integer");
                msgpack_pack_nil(&pk);
            }
            else
                msgpack_pack_int64(&pk, v);
        }
        else
        if (f && f->type == MC_FT_BOOLEAN) {
            if (strcmp(val, "true") == 0 || strcmp(val, "1") == 0)
                msgpack_pack_true(&pk);
            else
            if (strcmp(val, "false") == 0 || strcmp(val, "0") == 0)
                msgpack_pack_false(&pk);
            else {
                mc_errors_add(errs, pairs[i], "must be true or false");
                msgpack_pack_nil(&pk);
            }
        }
        else
            mc_pack_str(&pk, val, (size_t) vlen);
    }
}
