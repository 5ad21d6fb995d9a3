#include "mc_schema.h"

#include "mc_util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const mc_msgdef_t *
mc_schema_find(const char *service, mc_str_t type)
{
    for (size_t i = 0; i < mc_msgdefs_count; i++)
        if (strcmp(mc_msgdefs[i].service, service) == 0 && mc_str_eq(type, mc_msgdefs[i].type))
            return &mc_msgdefs[i];
    return NULL;
}

const mc_field_t *
mc_schema_field(const mc_msgdef_t *def, const char *name, size_t len)
{
    for (size_t i = 0; i < def->nfields; i++)
        if (strlen(def->fields[i].name) == len && memcmp(def->fields[i].name, name, len) == 0)
            return &def->fields[i];
    return NULL;
}

long
mc_utf8_len(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *) s;
    long n = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        size_t extra;
        uint32_t cp;
        if (c < 0x80) { extra = 0; cp = c; }
        else if ((c & 0xe0) == 0xc0) { extra = 1; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { extra = 2; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { extra = 3; cp = c & 0x07; }
        else return -1;
        if (i + extra >= len)
            return -1;
        for (size_t k = 1; k <= extra; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return -1;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        //  overlong forms, surrogates and values past U+10FFFF are not UTF-8
        if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000)
        ||  (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return -1;
        i += extra + 1;
        n++;
    }
    return n;
}

//  ISO 3166-1 alpha-2, officially assigned codes, two letters each.
static const char s_countries[] =
    "ADAEAFAGAIALAMAOAQARASATAUAWAXAZBABBBDBEBFBGBHBIBJBLBMBNBOBQBRBSBTBVBWBYBZCACCCDCFCGCHCICKCLCMCNCOCRCUCVCWCXCYCZ"
    "DEDJDKDMDODZECEEEGEHERESETFIFJFKFMFOFRGAGBGDGEGFGGGHGIGLGMGNGPGQGRGSGTGUGWGYHKHMHNHRHTHUIDIEILIMINIOIQIRISITJE"
    "JMJOJPKEKGKHKIKMKNKPKRKWKYKZLALBLCLILKLRLSLTLULVLYMAMCMDMEMFMGMHMKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZNANCNENFNGNINL"
    "NONPNRNUNZOMPAPEPFPGPHPKPLPMPNPRPSPTPWPYQARERORSRURWSASBSCSDSESGSHSISJSKSLSMSNSOSRSSSTSVSXSYSZTCTDTFTGTHTJTKTL"
    "TMTNTOTRTTTVTWTZUAUGUMUSUYUZVAVCVEVGVIVNVUWFWSYEYTZAZMZW";

bool
mc_country_valid(const char *s, size_t len)
{
    if (len != 2)
        return false;
    for (size_t i = 0; i + 1 < sizeof s_countries; i += 2)
        if (s_countries[i] == s[0] && s_countries[i + 1] == s[1])
            return true;
    return false;
}

//  A practical address check: one @, a non-empty local part, a dotted domain, no spaces or
//  control characters. Deliverability is the mail server's business.
static bool
s_email_ok(const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);
    if (!at || at == s || memchr(at + 1, '@', len - (size_t) (at + 1 - s)))
        return false;
    const char *domain = at + 1;
    size_t dlen = len - (size_t) (domain - s);
    const char *dot = dlen ? memchr(domain, '.', dlen) : NULL;
    if (!dot || dot == domain || domain[dlen - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) s[i] <= 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static bool
s_format_ok(mc_fformat_t format, const char *s, size_t len)
{
    switch (format) {
        case MC_FMT_NONE:
            return true;
        case MC_FMT_SKU:
            for (size_t i = 0; i < len; i++) {
                char c = s[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                ||    c == '-' || c == '_' || c == '.'))
                    return false;
            }
            return true;
        case MC_FMT_CURRENCY:
            if (len != 3)
                return false;
            for (size_t i = 0; i < 3; i++)
                if (s[i] < 'A' || s[i] > 'Z')
                    return false;
            return true;
        case MC_FMT_EMAIL:
            return s_email_ok(s, len);
        case MC_FMT_COUNTRY:
            return mc_country_valid(s, len);
        case MC_FMT_URL:
            if (!((len > 8 && memcmp(s, "https://", 8) == 0) || (len > 7 && memcmp(s, "http://", 7) == 0)))
                return false;
            for (size_t i = 0; i < len; i++)
                if ((unsigned char) s[i] <= 0x20 || s[i] == 0x7f)
                    return false;
            return true;
    }
    return false;
}

static const char *
s_format_name(mc_fformat_t format)
{
    switch (format) {
        case MC_FMT_SKU: return "letters, digits, '-', '_' and '.'";
        case MC_FMT_CURRENCY: return "an ISO 4217 code of three capital letters";
        case MC_FMT_URL: return "an http or https URL";
        case MC_FMT_EMAIL: return "an email address";
        case MC_FMT_COUNTRY: return "an ISO 3166-1 alpha-2 country code such as DE";
        default: return "valid";
    }
}

static void
s_check_string(const mc_field_t *f, const char *name, const msgpack_object *v, mc_errors_t *errs)
{
    long n = mc_utf8_len(v->via.str.ptr, v->via.str.size);
    if (n < 0)
        mc_errors_add(errs, name, "must be valid UTF-8");
    else
    if (n < f->min)
        mc_errors_add(errs, name, f->min == 1 ? "must not be empty" : "must have at least %lld characters",
                      (long long) f->min);
    else
    if (f->max && n > f->max)
        mc_errors_add(errs, name, "must have at most %lld characters", (long long) f->max);
    else
    if (!s_format_ok(f->format, v->via.str.ptr, v->via.str.size))
        mc_errors_add(errs, name, "must be %s", s_format_name(f->format));
}

typedef enum { FOR_ACTOR, FOR_HTTP } audience_t;

static void s_validate_map(const mc_field_t *fields, size_t nfields, bool patch, const char *prefix,
                           const msgpack_object *body, mc_errors_t *errs, audience_t who);

static void
s_check_value(const mc_field_t *f, const char *name, const msgpack_object *v, mc_errors_t *errs, audience_t who)
{
    switch (f->type) {
        case MC_FT_STRING:
            if (v->type != MSGPACK_OBJECT_STR)
                mc_errors_add(errs, name, "must be a string");
            else
                s_check_string(f, name, v, errs);
            break;
        case MC_FT_INTEGER: {
            int64_t i;
            if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT64_MAX)
                i = (int64_t) v->via.u64;
            else
            if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                i = v->via.i64;
            else {
                mc_errors_add(errs, name, "must be an integer");
                break;
            }
            if (i < f->min || i > f->max)
                mc_errors_add(errs, name, "must be between %lld and %lld", (long long) f->min,
                              (long long) f->max);
            break;
        }
        case MC_FT_BOOLEAN:
            if (v->type != MSGPACK_OBJECT_BOOLEAN)
                mc_errors_add(errs, name, "must be true or false");
            break;
        case MC_FT_STRINGS:
            if (v->type != MSGPACK_OBJECT_ARRAY) {
                mc_errors_add(errs, name, "must be an array of strings");
                break;
            }
            if (f->max_items && v->via.array.size > f->max_items) {
                mc_errors_add(errs, name, "must have at most %lld items", (long long) f->max_items);
                break;
            }
            for (uint32_t k = 0; k < v->via.array.size; k++) {
                const msgpack_object *e = &v->via.array.ptr[k];
                if (e->type != MSGPACK_OBJECT_STR) {
                    mc_errors_add(errs, name, "must be an array of strings");
                    break;
                }
                s_check_string(f, name, e, errs);
            }
            break;
        case MC_FT_OBJECT:
            if (v->type != MSGPACK_OBJECT_MAP)
                mc_errors_add(errs, name, "must be an object");
            else
                s_validate_map(f->sub, f->nsub, false, name, v, errs, who);
            break;
        case MC_FT_OBJECTS:
            if (v->type != MSGPACK_OBJECT_ARRAY) {
                mc_errors_add(errs, name, "must be an array of objects");
                break;
            }
            if (v->via.array.size < f->min_items || (f->max_items && v->via.array.size > f->max_items)) {
                mc_errors_add(errs, name, "must have between %lld and %lld items", (long long) f->min_items,
                              (long long) f->max_items);
                break;
            }
            for (uint32_t k = 0; k < v->via.array.size; k++) {
                char item[260];
                snprintf(item, sizeof item, "%s[%u]", name, k);
                if (v->via.array.ptr[k].type != MSGPACK_OBJECT_MAP)
                    mc_errors_add(errs, item, "must be an object");
                else
                    s_validate_map(f->sub, f->nsub, false, item, &v->via.array.ptr[k], errs, who);
            }
            break;
        case MC_FT_ANY:
            break;
    }
}

static const mc_field_t *
s_field(const mc_field_t *fields, size_t nfields, const char *name, size_t len)
{
    for (size_t i = 0; i < nfields; i++)
        if (strlen(fields[i].name) == len && memcmp(fields[i].name, name, len) == 0)
            return &fields[i];
    return NULL;
}

static void
s_validate_map(const mc_field_t *fields, size_t nfields, bool patch, const char *prefix,
               const msgpack_object *body, mc_errors_t *errs, audience_t who)
{
    for (uint32_t i = 0; i < body->via.map.size; i++) {
        const msgpack_object *k = &body->via.map.ptr[i].key;
        const msgpack_object *v = &body->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR) {
            mc_errors_add(errs, prefix, "member names must be strings");
            continue;
        }
        char name[240];
        int n = snprintf(name, sizeof name, "%s%s%.*s", prefix, *prefix ? "." : "", (int) k->via.str.size,
                         k->via.str.ptr);
        if (n < 0 || mc_utf8_len(name, strnlen(name, sizeof name)) < 0)
            snprintf(name, sizeof name, "?");
        const mc_field_t *f = s_field(fields, nfields, k->via.str.ptr, k->via.str.size);
        //  each side sees only its own fields: a client never sets an internal one, and a
        //  plaintext secret read by the edge never travels on to an actor
        if (f && ((who == FOR_ACTOR && f->http_only) || (who == FOR_HTTP && f->internal)))
            f = NULL;
        if (!f)
            mc_errors_add(errs, name, "is not a known field");
        else
        if (f->readonly)
            mc_errors_add(errs, name, "is read-only");
        else
        if (v->type == MSGPACK_OBJECT_NIL) {
            if (!f->nullable)
                mc_errors_add(errs, name, "must not be null");
        }
        else
            s_check_value(f, name, v, errs, who);
    }
    if (!patch)
        for (size_t i = 0; i < nfields; i++) {
            const mc_field_t *f = &fields[i];
            bool ours = who == FOR_HTTP ? !f->internal : !f->http_only;
            if (ours && f->required && !mc_map_get(body, f->name)) {
                char name[240];
                snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", f->name);
                mc_errors_add(errs, name, "is required");
            }
        }
}

static int
s_validate(const mc_msgdef_t *def, const msgpack_object *body, mc_errors_t *errs, audience_t who)
{
    int before = errs->count;
    if (!body || body->type != MSGPACK_OBJECT_MAP) {
        mc_errors_add(errs, "", "the body must be a JSON object");
        return -1;
    }
    s_validate_map(def->fields, def->nfields, def->patch, "", body, errs, who);
    return errs->count > before ? -1 : 0;
}

unsigned
mc_schema_shards(const char *service)
{
    //  MERCATO_SHARDS is a number for every service ("16"), optionally followed or replaced by
    //  per-service values ("16,identity=4"); every process of a deployment must see the same
    //  value, which the data directory records (mc_config_shards_check)
    const char *env = getenv("MERCATO_SHARDS");
    size_t n = strlen(service);
    unsigned all = 0;
    for (const char *p = env; p && *p;) {
        size_t len = strcspn(p, ",");
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p + len && v >= 1 && v <= MC_SHARDS_MAX)
            all = (unsigned) v;
        else
        if (len > n + 1 && strncmp(p, service, n) == 0 && p[n] == '=') {
            v = strtol(p + n + 1, &end, 10);
            if (end == p + len && v >= 1 && v <= MC_SHARDS_MAX)
                return (unsigned) v;
        }
        p += len + (p[len] == ',');
    }
    if (all)
        return all;
    for (size_t i = 0; i < mc_services_count; i++)
        if (strcmp(mc_services[i].name, service) == 0)
            return mc_services[i].shards ? mc_services[i].shards : 1;
    return 1;
}

void
mc_schema_shards_text(char *out, size_t size)
{
    size_t at = 0;
    out[0] = 0;
    for (size_t i = 0; i < mc_services_count && at < size; i++) {
        int n = snprintf(out + at, size - at, "%s%s=%u", i ? "," : "", mc_services[i].name,
                         mc_schema_shards(mc_services[i].name));
        at += n > 0 ? (size_t) n : 0;
    }
}

unsigned
mc_shard_of(const char *service, const char *key, size_t len)
{
    unsigned shards = mc_schema_shards(service);
    return shards > 1 ? mc_fnv1a32(key, len) % shards : 0;
}

unsigned
mc_shard_of_folded(const char *service, const char *key, size_t len)
{
    char folded[256];
    if (len > sizeof folded)
        len = sizeof folded;
    for (size_t i = 0; i < len; i++)
        folded[i] = (char) tolower((unsigned char) key[i]);
    return mc_shard_of(service, folded, len);
}

int
mc_shard_ulid(char out[MC_ULID_LEN + 1], mc_str_t seed, const char *service, unsigned want)
{
    size_t n = seed.len < MC_ULID_LEN ? seed.len : MC_ULID_LEN;
    memcpy(out, seed.ptr, n);
    out[n] = 0;
    if (!mc_ulid_valid(seed.ptr, seed.len))
        return -1;
    //  1 in shards variants lands on want: 2^20 of them leave no shard count unserved
    for (uint32_t i = 0; i < (1u << 20) && mc_shard_of(service, out, MC_ULID_LEN) != want; i++)
        mc_ulid_variant(out, i);
    return 0;
}

int
mc_schema_validate(const mc_msgdef_t *def, const msgpack_object *body, mc_errors_t *errs)
{
    return s_validate(def, body, errs, FOR_ACTOR);
}

int
mc_schema_validate_http(const mc_msgdef_t *def, const msgpack_object *body, mc_errors_t *errs)
{
    return s_validate(def, body, errs, FOR_HTTP);
}
