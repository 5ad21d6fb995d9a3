#include "edge_framing.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

const char *
edge_framing_header(const struct mg_header *headers, int count, const char *name, int *found)
{
    const char *first = NULL;
    *found = 0;
    for (int i = 0; i < count; i++)
        if (strcasecmp(headers[i].name, name) == 0) {
            if (!first)
                first = headers[i].value;
            (*found)++;
        }
    return first;
}

const char *
edge_framing_error(const struct mg_header *headers, int count)
{
    int cl_count, te_count;
    const char *cl = edge_framing_header(headers, count, "Content-Length", &cl_count);
    const char *te = edge_framing_header(headers, count, "Transfer-Encoding", &te_count);
    if (cl_count > 1)
        return "more than one Content-Length header";
    if (cl && te)
        return "both Content-Length and Transfer-Encoding";
    if (te_count > 1 || (te && strcasecmp(te, "chunked") != 0))
        return "unsupported Transfer-Encoding";
    if (cl) {
        if (!*cl)
            return "empty Content-Length";
        for (const char *p = cl; *p; p++)
            if (!isdigit((unsigned char) *p))
                return "Content-Length is not a number";
        if (strlen(cl) > 18)
            return "Content-Length is too large";
    }
    return NULL;
}

bool
edge_framing_bodiless(long long content_length, const char *transfer_encoding)
{
    return content_length == 0 || (content_length < 0 && !transfer_encoding);
}

bool
edge_framing_json_media(const char *ct, bool merge_patch)
{
    if (!ct)
        return false;
    size_t n = strcspn(ct, "; \t");
    return (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
        || (merge_patch && n == 28 && strncasecmp(ct, "application/merge-patch+json", 28) == 0);
}
