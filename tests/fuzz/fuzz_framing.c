/*  The edge's request checks on what civetweb parsed: the header limits (edge/edge_headers.c)
    and the framing (edge/edge_framing.c), which Content-Length / Transfer-Encoding combinations
    are accepted and whether a request has a body. The input is an optional request line
    ("METHOD target VERSION", when the first line has no ':') and header lines "Name: value"
    separated by LF (at most MG_MAX_HEADERS). They are laid out in one buffer as civetweb leaves
    its request buffer (line ends zeroed in place, the blank line's CR after the last field),
    since edge_headers_check reads that layout; content_length is derived as civetweb does (the
    first Content-Length read as a number, -1 when absent). Properties, stated independently of
    the code under test: a request the header checks pass has an implemented method, at most 63
    fields and, for HTTP/1.1, one Host; a refusal is a 400, 414, 431 or 501 with a code; an
    accepted framing has at most one framing header, a Content-Length of 1 to 18 digits, and a
    Transfer-Encoding that is exactly one "chunked"; a bodiless request is one with nothing to
    read; application/json is always a JSON media type, with any parameters. */
#include "fuzz.h"
#include "edge_framing.h"
#include "edge_headers.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static bool
s_named(const char *name, const char *want)
{
    return strcasecmp(name, want) == 0;
}

//  Appends len bytes of s and a NUL to the layout; returns where they start.
static char *
s_put(char *buf, size_t *at, const char *s, size_t len)
{
    char *start = buf + *at;
    memcpy(start, s, len);
    *at += len;
    buf[(*at)++] = 0;
    return start;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    //  civetweb's layout: every string NUL-terminated in one buffer, CRLF line ends zeroed
    char *buf = malloc(2 * size + 256);
    size_t at = 0;
    struct mg_request_info ri;
    memset(&ri, 0, sizeof ri);
    struct mg_header *h = ri.http_headers;
    int n = 0;
    char *line = text, *next = strchr(line, '\n');
    if (next)
        *next++ = 0;
    const char *method = "POST", *target = "/api/v1/products", *version = "1.1";
    if (!strchr(line, ':')) {
        char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
        if (sp1 && sp2) {
            *sp1 = *sp2 = 0;
            method = line;
            target = sp1 + 1;
            version = strncmp(sp2 + 1, "HTTP/", 5) == 0 ? sp2 + 6 : sp2 + 1;
        }
        line = next;
    }
    ri.request_method = s_put(buf, &at, method, strlen(method));
    char *q = strchr(target, '?');
    ri.request_uri = ri.local_uri = s_put(buf, &at, target, q ? (size_t) (q - target) : strlen(target));
    if (q)
        ri.query_string = s_put(buf, &at, q + 1, strlen(q + 1));
    memcpy(buf + at, "HTTP/", 5);
    at += 5;
    ri.http_version = s_put(buf, &at, version, strlen(version));
    buf[at++] = 0;      //  the request line's LF
    for (; line && n < MG_MAX_HEADERS; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        char *colon = strchr(line, ':');
        if (!colon || colon == line)
            continue;
        *colon = 0;
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        h[n].name = s_put(buf, &at, line, strlen(line));
        h[n++].value = s_put(buf, &at, value, strlen(value));
        buf[at++] = 0;  //  the field line's LF
    }
    buf[at++] = '\r';  //  the blank line
    buf[at++] = 0;
    ri.num_headers = n;

    edge_headers_problem_t problem = { 0 };
    if (edge_headers_check(&ri, &problem) == 0) {
        FUZZ_CHECK(edge_headers_method_implemented(ri.request_method));
        FUZZ_CHECK(n <= EDGE_HEADERS_MAX);
        int hosts = 0;
        for (int i = 0; i < n; i++)
            hosts += strcasecmp(h[i].name, "Host") == 0;
        FUZZ_CHECK(strcmp(ri.http_version, "1.1") != 0 || hosts == 1);
    }
    else
        FUZZ_CHECK((problem.status == 400 || problem.status == 414 || problem.status == 431
                    || problem.status == 501) && problem.code && problem.detail && problem.kind);

    int cl_n = 0, te_n = 0;
    const char *cl = NULL, *te = NULL, *ct = NULL;
    for (int i = 0; i < n; i++) {
        if (s_named(h[i].name, "Content-Length")) {
            cl_n++;
            cl = cl ? cl : h[i].value;
        }
        if (s_named(h[i].name, "Transfer-Encoding")) {
            te_n++;
            te = te ? te : h[i].value;
        }
        if (s_named(h[i].name, "Content-Type") && !ct)
            ct = h[i].value;
    }
    long long content_length = cl ? strtoll(cl, NULL, 10) : -1;

    const char *error = edge_framing_error(h, n);
    if (!error) {
        FUZZ_CHECK(cl_n + te_n <= 1);
        if (cl) {
            size_t len = strlen(cl);
            FUZZ_CHECK(len >= 1 && len <= 18 && strspn(cl, "0123456789") == len);
            FUZZ_CHECK(content_length >= 0 && content_length < 1000000000000000000LL);
        }
        if (te)
            FUZZ_CHECK(strcasecmp(te, "chunked") == 0);
        bool bodiless = edge_framing_bodiless(content_length, te);
        FUZZ_CHECK(bodiless == (content_length == 0 || (!cl && !te)));
    }
    else
        FUZZ_CHECK(*error && cl_n + te_n >= 1);
    bool json = edge_framing_json_media(ct, false), patch = edge_framing_json_media(ct, true);
    FUZZ_CHECK(!json || patch);     //  merge-patch routes accept JSON too
    if (ct && strncasecmp(ct, "application/json", 16) == 0 && strchr("; \t", ct[16]))
        FUZZ_CHECK(json);
    free(buf);
    free(text);
    return 0;
}
