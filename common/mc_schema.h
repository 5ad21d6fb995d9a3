/*  mc_schema: message definitions and HTTP routes, generated from schemas/<service>.json by
    schemas/gen.py, and the one validator every actor runs on a message body. */
#ifndef MC_SCHEMA_H
#define MC_SCHEMA_H

#include "mc_envelope.h"
#include "mc_plane.h"
#include "mc_util.h"

#include <stdbool.h>
#include <stdint.h>

//  OBJECT and OBJECTS hold nested members (sub); ANY is for internal messages that carry another
//  service's reply as it came.
typedef enum { MC_FT_STRING, MC_FT_INTEGER, MC_FT_BOOLEAN, MC_FT_STRINGS, MC_FT_OBJECT, MC_FT_OBJECTS,
               MC_FT_ANY } mc_ftype_t;
typedef enum { MC_FMT_NONE, MC_FMT_SKU, MC_FMT_CURRENCY, MC_FMT_URL, MC_FMT_EMAIL, MC_FMT_COUNTRY } mc_fformat_t;

typedef struct mc_field {
    const char *name;       //  JSON member name
    mc_ftype_t type;        //  wire type
    bool required;          //  must be present (ignored for patches)
    bool readonly;          //  clients may not send it: 422
    bool nullable;          //  null accepted (patches: null removes it)
    int64_t min, max;       //  string length in characters, or integer range
    int64_t min_items, max_items;   //  arrays only
    int64_t defval;         //  integers: value when absent
    bool has_default;       //  defval applies
    mc_fformat_t format;    //  extra syntax check on strings
    bool internal;          //  set by the edge, never accepted from a client
    bool http_only;         //  read by the edge from the client, never sent on to an actor
    const struct mc_field *sub; //  OBJECT, OBJECTS: the members of each object
    size_t nsub;            //  entries in sub
} mc_field_t;

typedef enum { MC_ACCESS_PUBLIC, MC_ACCESS_CUSTOMER, MC_ACCESS_OWNER, MC_ACCESS_ADMIN } mc_access_t;

typedef struct {
    const char *service;    //  "catalog"
    const char *type;       //  "product.create"
    const mc_field_t *fields;   //  the members it accepts
    size_t nfields;         //  entries in fields
    bool patch;             //  a merge patch: nothing required
    unsigned senders;       //  bit (1 << mc_peer_t) for each kind of peer that may send it
    mc_access_t access;     //  from the edge: the least its routes ask of the caller's role
} mc_msgdef_t;
typedef enum { MC_KEY_NONE, MC_KEY_PATH, MC_KEY_NEW, MC_KEY_USER, MC_KEY_FIELD } mc_keyrule_t;
//  Routes whose secrets the edge turns into what the actor needs before the message leaves:
//  passwords (register, login, password), refresh tokens (login, refresh, logout), cards (card).
typedef enum { MC_FLOW_NONE, MC_FLOW_REGISTER, MC_FLOW_LOGIN, MC_FLOW_PASSWORD, MC_FLOW_REFRESH, MC_FLOW_LOGOUT,
               MC_FLOW_CARD } mc_flow_t;

//  A list route whose service has several shards asks every shard and merges their pages
//  (edge/edge_gather.h): items in ascending or descending order of their sort keys.
typedef enum { MC_GATHER_NONE, MC_GATHER_ASC, MC_GATHER_DESC } mc_gather_t;

typedef struct {
    const char *method;     //  "GET"
    const char *path;       //  "/api/v1/products/{id}"
    const mc_msgdef_t *msg; //  the message it becomes
    unsigned shards;        //  the schema's default shards of msg->service (mc_schema_shards decides)
    mc_access_t access;     //  who may call it
    mc_keyrule_t key;       //  where the routing key comes from
    int status;             //  status on success
    bool query;             //  query parameters become the body (typed by msg's fields)
    bool body;              //  takes a JSON body
    bool merge_patch;       //  also accepts application/merge-patch+json
    bool etag;              //  reply carries an ETag; honours If-Match
    const char *location;   //  Location prefix for 201 replies, or NULL
    mc_flow_t flow;         //  secrets handled at the edge
    const char *key_field;  //  MC_KEY_FIELD: the body (or query) member holding the routing key
    bool idempotent;        //  honours Idempotency-Key (passed on in the envelope)
    //  MC_KEY_NEW only: the new id is drawn until it falls on the shard of this other key (the
    //  caller, MC_KEY_USER; or a body member, MC_KEY_FIELD), so that what must be unique or
    //  listed together (an email, a SKU, a customer's orders) lives on one shard
    mc_keyrule_t shard_by;
    const char *shard_by_field;
    mc_gather_t gather;     //  a list gathered from every shard, in this order of sort keys
    const char *gather_sum; //  or NULL: items of one sort key are one item, with this integer summed
    bool gather_array;      //  the answer is the bare array of items, not a page
} mc_route_t;

//  How many shards each service has.
typedef struct {
    const char *name;
    unsigned shards;
} mc_service_def_t;

extern const mc_service_def_t mc_services[];
extern const size_t mc_services_count;

//  Shards a service may have at most.
#define MC_SHARDS_MAX 64
//  Shards of service: MERCATO_SHARDS ("16" for every service, "16,inventory=4" with an override;
//  at most MC_SHARDS_MAX each) or the schema's default (1 when unknown).
unsigned mc_schema_shards(const char *service);

//  "catalog=16,identity=16,...": every service's shards as this process sees them (the record a
//  data directory keeps of the counts it was made with).
void mc_schema_shards_text(char *out, size_t size);

//  The shard of service that key routes to.
unsigned mc_shard_of(const char *service, const char *key, size_t len);
//  The same for a key compared without regard to ASCII case (an email, a SKU), as shard_by
//  routes place new ids.
unsigned mc_shard_of_folded(const char *service, const char *key, size_t len);

//  An id for a new entity that must live on shard `want` of service, derived from seed (the
//  message id of the request that makes it) alone: seed itself when it falls there, else its
//  first variant (mc_ulid_variant) that does. A handler cannot draw random ids (a resend or a
//  replay must make the same entity), which is why this is not the edge's draw (shard_by).
//  Returns 0, or -1 with out a copy of seed (cut to MC_ULID_LEN) when seed is not a ULID.
int mc_shard_ulid(char out[MC_ULID_LEN + 1], mc_str_t seed, const char *service, unsigned want);

extern const mc_route_t mc_routes[];
extern const size_t mc_routes_count;
extern const mc_msgdef_t mc_msgdefs[];
extern const size_t mc_msgdefs_count;
extern const char mc_openapi_json[];
//  The internal body member (boolean) by which the edge asks a shard to add "keys" to its list
//  reply: each item's sort key, as a cursor (mc_page_keys_t in mc_envelope.h).
extern const char mc_gather_field[];

//  The definition of service's message type, or NULL.
const mc_msgdef_t *mc_schema_find(const char *service, mc_str_t type);

//  The field of def named name, or NULL.
const mc_field_t *mc_schema_field(const mc_msgdef_t *def, const char *name, size_t len);

//  Validates a body map against def as an actor sees it (http_only fields are unknown, internal
//  ones are accepted); every complaint goes to errs. 0 when valid.
int mc_schema_validate(const mc_msgdef_t *def, const msgpack_object *body, mc_errors_t *errs);

//  Validates a client's body as the edge receives it: every field the client may send is
//  checked (http_only ones included), internal ones are refused. 0 when valid.
int mc_schema_validate_http(const mc_msgdef_t *def, const msgpack_object *body, mc_errors_t *errs);

//  True for an officially assigned ISO 3166-1 alpha-2 code.
bool mc_country_valid(const char *s, size_t len);

//  Counts UTF-8 code points; -1 when s is not valid UTF-8.
long mc_utf8_len(const char *s, size_t len);

#endif
