/*  The edge's request framing (edge/edge_framing.c): which Content-Length / Transfer-Encoding
    combinations are accepted and whether a request has a body, as civetweb hands the headers
    over. The input is header lines, "Name: value" separated by LF (at most MG_MAX_HEADERS);
    content_length is derived as civetweb does (the first Content-Length read as a number, -1
    when absent). Properties, stated independently of the code under test: an accepted request
    has at most one framing header, a Content-Length that is 1 to 18 digits, and a
    Transfer-Encoding that is exactly one "chunked"; a bodiless request is one with nothing to
    read; application/json is always a JSON media type, with any parameters. */
#include "fuzz.h"
#include "edge_framing.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static bool
s_named(const char *name, const char *want)
{
    return strcasecmp(name, want) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    struct mg_header h[MG_MAX_HEADERS];
    int n = 0;
    for (char *line = text, *next; line && n < MG_MAX_HEADERS; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = 0;
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        h[n].name = line;
        h[n++].value = value;
    }
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
    free(text);
    return 0;
}
