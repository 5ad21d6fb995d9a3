/*  edge_headers self-test: each limit on requests laid out as civetweb 1.15 leaves them. The
    end-to-end test (tests/e2e/test_http_limits.py) sends the same requests to a real edge. */
#include "edge_headers.h"

#include "mc_test.h"

#include <ctype.h>

//  What civetweb 1.15's parse_http_request and parse_http_headers do to raw (which ends with a
//  blank line): words and line ends zeroed in place, the query cut off at '?' (handle_request),
//  at most MG_MAX_HEADERS fields, parsing stopped at a line that does not start like a name.
static void
s_parse(char *buf, struct mg_request_info *ri)
{
    memset(ri, 0, sizeof *ri);
    buf[strlen(buf) - 1] = 0;
    char *p = buf;
    ri->request_method = p;
    p = strchr(p, ' ');
    *p++ = 0;
    ri->request_uri = p;
    p = strchr(p, ' ');
    *p++ = 0;
    ri->http_version = p + 5;
    p += strcspn(p, "\r\n");
    do
        *p++ = 0;
    while (isspace((unsigned char) *p));
    char *q = strchr(ri->request_uri, '?');
    if (q) {
        *q = 0;
        ri->query_string = q + 1;
    }
    for (int i = 0; i < MG_MAX_HEADERS; i++) {
        char *dp = p;
        while (*dp != ':' && *dp >= 33 && *dp <= 126)
            dp++;
        if (dp == p)
            break;
        *dp = 0;
        ri->http_headers[i].name = p;
        do
            dp++;
        while (*dp == ' ' || *dp == '\t');
        ri->http_headers[i].value = dp;
        while (*dp && *dp != '\r' && *dp != '\n')
            dp++;
        if (*dp == '\r')
            *dp++ = 0;
        ri->num_headers = i + 1;
        if (!*dp)
            break;
        *dp++ = 0;
        p = dp;
        if (*dp == '\r' || *dp == '\n')
            break;
    }
}

//  The status edge_headers_check gives raw, 0 when it may be served.
static int
s_status(const char *raw)
{
    static char buf[200000];
    snprintf(buf, sizeof buf, "%s", raw);
    struct mg_request_info ri;
    s_parse(buf, &ri);
    edge_headers_problem_t p;
    return edge_headers_check(&ri, &p) ? p.status : 0;
}

//  "GET target HTTP/1.1\r\nHost: x\r\n" + n filler fields + extra + the blank line.
static const char *
s_request(const char *method, const char *target, int n, const char *extra)
{
    static char buf[200000];
    size_t len = (size_t) snprintf(buf, sizeof buf, "%s %s HTTP/1.1\r\nHost: x\r\n", method, target);
    for (int i = 0; i < n; i++)
        len += (size_t) snprintf(buf + len, sizeof buf - len, "X-Filler-%02d: %d\r\n", i, i);
    snprintf(buf + len, sizeof buf - len, "%s\r\n", extra);
    return buf;
}

static void
test_plain_requests_pass(void)
{
    ASSERT_EQ(s_status("GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"), 0);
    ASSERT_EQ(s_status("GET /healthz HTTP/1.1\nHost: x\nAccept: */*\n\n"), 0);  //  bare LF
    ASSERT_EQ(s_status("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n\r\n"), 0);
    ASSERT_EQ(s_status("GET /healthz HTTP/1.0\r\n\r\n"), 0);
    ASSERT_EQ(s_status("HEAD /healthz?a=1 HTTP/1.0\r\nAccept: */*\r\n\r\n"), 0);
}

static void
test_header_count(void)
{
    ASSERT_EQ(s_status(s_request("GET", "/", 62, "")), 0);       //  63 with Host
    ASSERT_EQ(s_status(s_request("GET", "/", 63, "")), 431);
    ASSERT_EQ(s_status(s_request("GET", "/", 80, "Authorization: Bearer x\r\n")), 431);
}

static void
test_header_size(void)
{
    static char big[9000];
    memset(big, 'b', sizeof big - 1);
    char extra[9100];
    snprintf(extra, sizeof extra, "X-Big: %.*s\r\n", EDGE_HEADER_MAX - 5, big);
    ASSERT_EQ(s_status(s_request("GET", "/", 0, extra)), 0);
    snprintf(extra, sizeof extra, "X-Big: %.*s\r\n", EDGE_HEADER_MAX - 4, big);
    ASSERT_EQ(s_status(s_request("GET", "/", 0, extra)), 431);
}

static void
test_folding_and_unparsed_lines(void)
{
    ASSERT_EQ(s_status("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\nTransfer-Encoding: chunked\r\n\r\n"), 431);
    ASSERT_EQ(s_status("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\tfolded\r\n\r\n"), 431);
    //  a bare LF and a space, zeroed, look like CRLF: not taken for folding, but still refused
    ASSERT_EQ(s_status("GET / HTTP/1.1\n Host: x\n\n"), 400);
    ASSERT_EQ(s_status("GET / HTTP/1.1\nHost: x\n folded\n\n"), 431);
    ASSERT_EQ(s_status("GET / HTTP/1.1\r\n  Host: x\r\n\r\n"), 431);
    ASSERT_EQ(s_status("GET / HTTP/1.1\r\nHost: x\r\n\xff" "bad: 1\r\nAuthorization: Bearer x\r\n\r\n"), 400);
    ASSERT_EQ(s_status("GET / HTTP/1.1\r\nHost: x\r\n:bad\r\n\r\n"), 400);
}

static void
test_target_length(void)
{
    static char target[EDGE_TARGET_MAX + 2];
    memset(target, 'a', sizeof target - 1);
    target[0] = '/';
    target[EDGE_TARGET_MAX] = 0;
    ASSERT_EQ(s_status(s_request("GET", target, 0, "")), 0);
    target[EDGE_TARGET_MAX] = 'a';
    ASSERT_EQ(s_status(s_request("GET", target, 0, "")), 414);
    //  the query counts, with its '?'
    target[EDGE_TARGET_MAX] = 0;
    target[10] = '?';
    ASSERT_EQ(s_status(s_request("GET", target, 0, "")), 0);
    target[EDGE_TARGET_MAX] = 'a';
    ASSERT_EQ(s_status(s_request("GET", target, 0, "")), 414);
}

static void
test_host(void)
{
    ASSERT_EQ(s_status("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"), 400);
    ASSERT_EQ(s_status("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
    ASSERT_EQ(s_status("GET / HTTP/1.1\r\nhOsT: a\r\n\r\n"), 0);
}

static void
test_methods(void)
{
    const char *ours[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" };
    for (size_t i = 0; i < sizeof ours / sizeof *ours; i++) {
        MC_CHECK(edge_headers_method_implemented(ours[i]));
        ASSERT_EQ(s_status(s_request(ours[i], "/", 0, "")), 0);
    }
    const char *others[] = { "PROPFIND", "MKCOL", "CONNECT", "get", "BREW" };
    for (size_t i = 0; i < sizeof others / sizeof *others; i++)
        ASSERT_EQ(s_status(s_request(others[i], "/", 0, "")), 501);
    MC_CHECK(!edge_headers_method_implemented(NULL));
    MC_CHECK(edge_headers_token("BREW"));
    MC_CHECK(!edge_headers_token(""));
    MC_CHECK(!edge_headers_token("GE T"));
    MC_CHECK(!edge_headers_token("G\x80T"));
    MC_CHECK(!edge_headers_token(NULL));
    MC_CHECK(!edge_headers_token("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));    //  33 characters
}

int
main(void)
{
    MC_TEST_RUN(test_plain_requests_pass);
    MC_TEST_RUN(test_header_count);
    MC_TEST_RUN(test_header_size);
    MC_TEST_RUN(test_folding_and_unparsed_lines);
    MC_TEST_RUN(test_target_length);
    MC_TEST_RUN(test_host);
    MC_TEST_RUN(test_methods);
    return MC_TEST_DONE();
}
