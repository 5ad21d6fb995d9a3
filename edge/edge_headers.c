#include "edge_headers.h"

#include <string.h>
#include <strings.h>

static const char *const s_methods[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" };

bool
edge_headers_method_implemented(const char *method)
{
    for (size_t i = 0; method && i < sizeof s_methods / sizeof *s_methods; i++)
        if (strcmp(method, s_methods[i]) == 0)
            return true;
    return false;
}

bool
edge_headers_token(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        bool alnum = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
        if (!alnum && !strchr("!#$%&'*+-.^_`|~", c))
            return false;
    }
    return true;
}

//  What follows the last field civetweb kept, which it parsed in place in its request buffer:
//  each line end became NUL bytes, so the next line starts eol bytes after the value's end. The
//  request line tells eol (its end and all whitespace after it were zeroed): 2 for CRLF, 1 for a
//  bare LF, more when the first field line began with whitespace. Returns the problem's detail,
//  or NULL when the headers ended there.
static const char *
s_unparsed_line(const struct mg_request_info *ri, bool *fold)
{
    *fold = false;
    if (ri->num_headers == 0 || !ri->http_version)
        return NULL;
    const char *version_end = ri->http_version + strlen(ri->http_version);
    long eol = (long) (ri->http_headers[0].name - version_end);
    if (eol > 2) {
        *fold = true;
        return "the first header line starts with whitespace";
    }
    if (eol < 1)
        return NULL;    //  not laid out as parsed; nothing to infer
    const char *last = ri->http_headers[ri->num_headers - 1].value;
    const char *next = last + strlen(last) + eol;
    if (*next == ' ' || *next == '\t') {
        *fold = true;
        return "obsolete line folding (a header line that starts with whitespace)";
    }
    //  the blank line: its CR (its LF was zeroed as the end of the request), or its zeroed LF
    if ((eol == 2 && *next == '\r') || (eol == 1 && *next == 0))
        return NULL;
    return "a header line could not be parsed";
}

static int
s_problem(edge_headers_problem_t *p, int status, const char *code, const char *detail, const char *kind)
{
    *p = (edge_headers_problem_t) { status, code, detail, kind };
    return -1;
}

int
edge_headers_check(const struct mg_request_info *ri, edge_headers_problem_t *problem)
{
    if (!edge_headers_method_implemented(ri->request_method))
        return s_problem(problem, 501, "not_implemented",
                         "the edge implements GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS", "method");
    //  civetweb cut the query off the target at its '?'
    size_t target = (ri->request_uri ? strlen(ri->request_uri) : 0) + (ri->query_string ? 1 + strlen(ri->query_string) : 0);
    if (target > EDGE_TARGET_MAX)
        return s_problem(problem, 414, "uri_too_long", "the request target is longer than 8 KiB", "target");
    if (ri->num_headers > EDGE_HEADERS_MAX)
        return s_problem(problem, 431, "header_fields_too_large", "more than 63 header fields", "headers");
    int hosts = 0;
    for (int i = 0; i < ri->num_headers; i++) {
        const struct mg_header *h = &ri->http_headers[i];
        if (strlen(h->name) + strlen(h->value) > EDGE_HEADER_MAX)
            return s_problem(problem, 431, "header_fields_too_large", "a header field is larger than 8 KiB", "headers");
        hosts += strcasecmp(h->name, "Host") == 0;
    }
    bool fold;
    const char *unparsed = s_unparsed_line(ri, &fold);
    if (unparsed)
        return s_problem(problem, fold ? 431 : 400, fold ? "header_fields_too_large" : "malformed_request",
                         unparsed, "headers");
    //  RFC 9112 3.2: a server MUST answer 400 to HTTP/1.1 without Host, or with more than one
    if (ri->http_version && strcmp(ri->http_version, "1.1") == 0 && hosts != 1)
        return s_problem(problem, 400, "malformed_request",
                         hosts ? "more than one Host header" : "HTTP/1.1 requests must carry a Host header", "headers");
    return 0;
}
