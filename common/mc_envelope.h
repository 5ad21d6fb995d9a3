/*  mc_envelope: the request and reply envelopes of schemas/envelope.md.

    Decoded envelopes point into the frame they came from (no copies): keep the frame and the
    msgpack_unpacked alive while the envelope is in use. */
#ifndef MC_ENVELOPE_H
#define MC_ENVELOPE_H

#include "mc_msgpack.h"

//  Frames larger than this are refused by every socket (ZMQ_MAXMSGSIZE).
#define MC_FRAME_MAX (1024 * 1024 + 64 * 1024)

#define MC_ESHAPE -10   //  well-formed msgpack, but not an envelope

/*  The longest string each envelope field may hold, in bytes (schemas/envelope.md, "Limits and
    rejection"). The decoders refuse a longer one, or one holding a NUL byte, as MC_ESHAPE: so a
    handler may copy any decoded field into a buffer sized from these, and build storage keys
    of it with no truncation that could make two fields equal. */
#define MC_ENV_ID_MAX       64      //  ULIDs, Kafka ce_ids
#define MC_ENV_TYPE_MAX     64
#define MC_ENV_KEY_MAX      128     //  entity ids; the edge sends at most 95 bytes
#define MC_ENV_CORR_MAX     128     //  X-Request-Id (the edge keeps at most 64 bytes)
#define MC_ENV_CAUSE_MAX    64      //  a message or event id
#define MC_ENV_REPLY_MAX    64
#define MC_ENV_USER_MAX     64      //  a token's sub (the edge takes at most 63 bytes)
#define MC_ENV_ROLE_MAX     16
#define MC_ENV_TRACE_MAX    55      //  a W3C traceparent, version 00
#define MC_ENV_IF_MATCH_MAX 128     //  our ETags have at most 31 bytes
#define MC_ENV_IDEM_MAX     255
#define MC_ENV_ETAG_MAX     128

typedef struct {
    mc_str_t id;        //  message id (ULID)
    mc_str_t type;      //  message type, "product.create"
    mc_str_t key;       //  routing key
    mc_str_t corr;      //  correlation id (HTTP request id)
    mc_str_t cause;     //  causation id, may be empty
    mc_str_t reply;     //  who asked, for logs
    mc_str_t user;      //  verified caller id, empty when anonymous
    mc_str_t role;      //  verified caller role
    mc_str_t trace;     //  W3C traceparent, may be empty
    mc_str_t if_match;  //  If-Match precondition, may be empty
    mc_str_t idem;      //  the client's Idempotency-Key, may be empty
    uint64_t deadline;  //  unix ms after which nobody waits
    uint64_t time;      //  unix ms the edge received the request
    const msgpack_object *body;     //  a map; points into the unpacked frame
} mc_request_t;

typedef struct {
    mc_str_t id;        //  the request's message id
    int status;         //  HTTP-like outcome
    mc_str_t etag;      //  entity tag, may be empty
    const msgpack_object *body;     //  result or NULL
    const msgpack_object *error;    //  {code, detail, errors?} or NULL
    bool replayed;      //  the stored answer to an earlier request with the same Idempotency-Key
} mc_reply_t;

//  Decodes a request frame. Returns 0; MC_EPARSE/MC_ETOODEEP when the frame is not msgpack
//  (nothing to answer); MC_ESHAPE when it is a map of the wrong shape, or a string field is
//  longer than its MC_ENV_*_MAX or holds a NUL byte (req->id is set when the frame had a usable
//  id, so the caller can answer 400 bad_envelope). Call msgpack_unpacked_destroy after.
int mc_request_decode(msgpack_unpacked *u, const void *buf, size_t len, mc_request_t *req);

//  Encodes a request; body_raw is an already-packed msgpack map (empty = {}).
void mc_request_encode(msgpack_sbuffer *out, const mc_request_t *req, mc_str_t body_raw);

//  The message id of a request or reply frame as the encoders here lay it out (a map whose first
//  entries are "v" and "id"), read without decoding the rest: 0 with *id pointing into buf, or
//  -1 when the frame does not start that way (decode it to know more). For matching a reply to
//  its request where the whole frame is decoded later anyway.
int mc_envelope_id(const void *buf, size_t len, mc_str_t *id);

//  Decodes a reply frame; same return codes as mc_request_decode (id and etag are bounded by
//  MC_ENV_ID_MAX and MC_ENV_ETAG_MAX).
int mc_reply_decode(msgpack_unpacked *u, const void *buf, size_t len, mc_reply_t *rep);

//  Starts a success reply: writes the envelope up to the "body" key; the caller then packs
//  exactly one object (the body). etag may be NULL.
void mc_reply_begin(msgpack_packer *pk, mc_str_t id, int status, const char *etag);

//  A cursor's raw bytes at most (a longer one is not sent: that page reads as the last).
#define MC_CURSOR_MAX 96

//  Packs a complete 200 page of a list, {items: [...], next_cursor}: items holds n objects
//  already packed; next (nextlen bytes) is the raw cursor, sent base64url-encoded, or NULL on
//  the last page.
void mc_reply_page(msgpack_packer *pk, mc_str_t id, const msgpack_sbuffer *items, size_t n,
                   const void *next, size_t nextlen);
//  The same with room for more members after next_cursor, which the caller packs (key, value).
void mc_reply_page_more(msgpack_packer *pk, mc_str_t id, const msgpack_sbuffer *items, size_t n,
                        const void *next, size_t nextlen, size_t more);

//  One validation complaint.
typedef struct {
    char field[64];
    char message[120];
} mc_field_error_t;

#define MC_ERRORS_MAX 16

typedef struct {
    int count;                      //  complaints recorded (may exceed MC_ERRORS_MAX)
    mc_field_error_t list[MC_ERRORS_MAX];   //  the first MC_ERRORS_MAX of them
} mc_errors_t;

void mc_errors_add(mc_errors_t *errs, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

//  Packs a complete error reply. errs may be NULL.
void mc_reply_error(msgpack_packer *pk, mc_str_t id, int status, const char *code,
                    const char *detail, const mc_errors_t *errs);

//  Packs the {code, detail, errors?} map of an error.
void mc_pack_error(msgpack_packer *pk, const char *code, const char *detail, const mc_errors_t *errs);

//  Packs a complete reply whose body (or, when error, whose error map) is already packed in raw
//  (len bytes; 0 packs nil). replayed marks a stored answer to a repeated Idempotency-Key.
void mc_reply_raw(msgpack_packer *pk, mc_str_t id, int status, bool error, const void *raw, size_t len,
                  bool replayed);

//  An error reply that tells the client when to try again (the edge sends Retry-After).
void mc_reply_error_retry(msgpack_packer *pk, mc_str_t id, int status, const char *code,
                          const char *detail, uint64_t retry_after_s);

#endif
