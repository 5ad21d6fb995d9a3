#include "edge_response.h"

#include "mc_json.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

const char *
edge_reason(int status)
{
    switch (status) {
        case 200: return "OK";
        case 201: return "Created";
        case 202: return "Accepted";
        case 204: return "No Content";
        case 304: return "Not Modified";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 402: return "Payment Required";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 412: return "Precondition Failed";
        case 411: return "Length Required";
        case 413: return "Content Too Large";
        case 414: return "URI Too Long";
        case 415: return "Unsupported Media Type";
        case 422: return "Unprocessable Content";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        case 505: return "HTTP Version Not Supported";
        case 507: return "Insufficient Storage";
        default: return "Unknown";
    }
}

void
edge_force_close(struct mg_connection *conn)
{
    //  civetweb 1.15 decides keep-alive from the request's own Connection header and offers no
    //  call to drop a connection. After a framing error the rest of the stream cannot be trusted
    //  (request smuggling), so we rewrite that header to "close" in its copy of the request.
    struct mg_request_info *ri = (struct mg_request_info *) mg_get_request_info(conn);
    if (!ri)
        return;
    for (int i = 0; i < ri->num_headers; i++)
        if (strcasecmp(ri->http_headers[i].name, "Connection") == 0) {
            ri->http_headers[i].value = "close";
            return;
        }
    if (ri->num_headers < MG_MAX_HEADERS) {
        ri->http_headers[ri->num_headers].name = "Connection";
        ri->http_headers[ri->num_headers].value = "close";
        ri->num_headers++;
    }
}

//  RFC 9110 5.6.7 IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT"; written by hand because
//  strftime's %a and %b follow the locale.
static void
s_http_date(char *out, size_t outsz)
{
    static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(out, outsz, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void
edge_respond(edge_reply_t *r, int status, const char *content_type, const char *extra_headers,
             const char *body, size_t len)
{
    char head[3072];
    bool no_body = status == 204 || status == 304;
    char cors[512] = "";
    if (r->origin)
        snprintf(cors, sizeof cors, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n"
                 "Access-Control-Expose-Headers: ETag, Location, X-Request-Id, Retry-After, Idempotent-Replayed\r\n", r->origin);
    char date[40];
    s_http_date(date, sizeof date);
    //  a HEAD answer has the headers GET's would have, Content-Length included, and no body
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\n"
                     "Date: %s\r\n"
                     "X-Request-Id: %s\r\n"
                     "%s%s%s"
                     "%s%s"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "\r\n",
                     status, edge_reason(status), date, r->request_id,
                     content_type && !no_body ? "Content-Type: " : "", content_type && !no_body ? content_type : "",
                     content_type && !no_body ? "\r\n" : "",
                     extra_headers ? extra_headers : "", cors, no_body ? 0 : len,
                     r->close ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t) n >= sizeof head)
        n = snprintf(head, sizeof head, "HTTP/1.1 500 Internal Server Error\r\nDate: %s\r\nContent-Length: 0\r\n\r\n",
                     date);
    if (no_body || r->head)
        len = 0;
    r->status = status;
    if (r->sink) {
        msgpack_sbuffer_write(r->sink, head, (size_t) n);
        if (len)
            msgpack_sbuffer_write(r->sink, body, len);
        return;
    }
    size_t total = (size_t) n + len;
    char stack[16384];
    char *buf = total <= sizeof stack ? stack : malloc(total);
    if (!buf)
        return;
    memcpy(buf, head, (size_t) n);
    if (len)
        memcpy(buf + n, body, len);
    if (r->close)
        edge_force_close(r->conn);
    mg_write(r->conn, buf, total);
    if (buf != stack)
        free(buf);
}

static const char *
s_title(int status)
{
    switch (status) {
        case 400: return "Malformed request";
        case 404: return "Not found";
        case 405: return "Method not allowed";
        case 408: return "Request too slow";
        case 409: return "Conflict";
        case 412: return "Precondition failed";
        case 413: return "Body too large";
        case 414: return "Request target too long";
        case 415: return "Unsupported media type";
        case 422: return "Validation failed";
        case 431: return "Request headers too large";
        case 501: return "Method not implemented";
        case 503: return "Service unavailable";
        case 504: return "Service did not answer in time";
        default: return edge_reason(status);
    }
}

void
edge_problem(edge_reply_t *r, int status, const char *code, const char *detail,
             const msgpack_object *errors, const char *extra_headers)
{
    edge_problem_ext(r, status, code, detail, errors, NULL, extra_headers);
}

void
edge_problem_ext(edge_reply_t *r, int status, const char *code, const char *detail,
                 const msgpack_object *errors, const msgpack_object *members, const char *extra_headers)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    char type[160];
    snprintf(type, sizeof type, "urn:mercato:problem:%s", code);
    msgpack_sbuffer_write(&b, "{\"type\":", 8);
    mc_json_write_str(&b, type, strlen(type));
    msgpack_sbuffer_write(&b, ",\"title\":", 9);
    const char *title = s_title(status);
    mc_json_write_str(&b, title, strlen(title));
    char st[32];
    int n = snprintf(st, sizeof st, ",\"status\":%d", status);
    msgpack_sbuffer_write(&b, st, (size_t) n);
    msgpack_sbuffer_write(&b, ",\"detail\":", 10);
    mc_json_write_str(&b, detail, strlen(detail));
    msgpack_sbuffer_write(&b, ",\"code\":", 8);
    mc_json_write_str(&b, code, strlen(code));
    //  a stored answer replayed for an Idempotency-Key names the request that made it
    msgpack_sbuffer_write(&b, ",\"instance\":", 12);
    char instance[200];
    snprintf(instance, sizeof instance, "urn:mercato:request:%s", r->request_id);
    const msgpack_object *given = mc_map_get(members, "instance");
    if (given && given->type == MSGPACK_OBJECT_STR && given->via.str.size < sizeof instance)
        snprintf(instance, sizeof instance, "%.*s", (int) given->via.str.size, given->via.str.ptr);
    mc_json_write_str(&b, instance, strlen(instance));
    if (errors && errors->type == MSGPACK_OBJECT_ARRAY) {
        msgpack_sbuffer_write(&b, ",\"errors\":", 10);
        mc_json_write(&b, errors);
    }
    static const char *const standard[] = { "type", "title", "status", "detail", "code", "errors" };
    for (uint32_t i = 0; members && members->type == MSGPACK_OBJECT_MAP && i < members->via.map.size; i++) {
        const msgpack_object_kv *kv = &members->via.map.ptr[i];
        bool taken = kv->key.type != MSGPACK_OBJECT_STR
                     || (kv->key.via.str.size == 8 && memcmp(kv->key.via.str.ptr, "instance", 8) == 0);
        for (size_t j = 0; j < sizeof standard / sizeof *standard && !taken; j++)
            taken = kv->key.via.str.size == strlen(standard[j])
                    && memcmp(kv->key.via.str.ptr, standard[j], kv->key.via.str.size) == 0;
        if (taken)
            continue;
        msgpack_sbuffer_write(&b, ",", 1);
        mc_json_write_str(&b, kv->key.via.str.ptr, kv->key.via.str.size);
        msgpack_sbuffer_write(&b, ":", 1);
        mc_json_write(&b, &kv->val);
    }
    msgpack_sbuffer_write(&b, "}", 1);
    edge_respond(r, status, "application/problem+json", extra_headers, b.data, b.size);
    msgpack_sbuffer_destroy(&b);
}
