#include "edge_pages.h"

#include "edge_auth.h"
#include "edge_client.h"
#include "mc_json.h"
#include "edge_metrics.h"
#include "mc_proto.h"
#include "mc_schema.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;       //  file name under the docs directory
    const char *type;       //  its media type
    char *data;             //  contents, or NULL when missing
    size_t size;            //  bytes
} asset_t;

static asset_t s_assets[] = {
    { "swagger-ui.css", "text/css", NULL, 0 },
    { "swagger-ui-bundle.js", "application/javascript", NULL, 0 },
};

static char *
s_slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n > 0 ? malloc((size_t) n) : NULL;
    if (buf && fread(buf, 1, (size_t) n, f) != (size_t) n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = buf ? (size_t) n : 0;
    return buf;
}

void
edge_pages_init(const char *docs_dir)
{
    for (size_t i = 0; docs_dir && i < sizeof s_assets / sizeof *s_assets; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", docs_dir, s_assets[i].name);
        s_assets[i].data = s_slurp(path, &s_assets[i].size);
    }
}

static const char *
s_route_label(size_t slot)
{
    static char labels[64][160];
    if (slot < mc_routes_count && slot < 64) {
        if (!labels[slot][0])
            snprintf(labels[slot], sizeof labels[slot], "%s %s", mc_routes[slot].method, mc_routes[slot].path);
        return labels[slot];
    }
    return slot == edge_metrics_slot_internal() ? "edge" : "unmatched";
}

//  Which shards have a live owner, by the directory table the edge follows (the dispatcher
//  answers from its copy; the broker only before the first table); NULL when neither knows.
static char *
s_live_services(void)
{
    zframe_t *reply = NULL;
    if (edge_client_call("mmi.services", "", 0, 500, &reply) != EDGE_CALL_REPLY)
        return NULL;
    char *text = zframe_strdup(reply);
    zframe_destroy(&reply);
    return text;
}

//  True when text, a list of lines, holds line (which ends in "\n").
static bool
s_has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if (p == text || p[-1] == '\n')
            return n > 0;
    return false;
}

static void
s_readyz(edge_reply_t *r)
{
    char *live = s_live_services();
    char missing[1024] = "";
    size_t m = 0;
    for (size_t i = 0; i < mc_routes_count; i++) {
        const mc_route_t *route = &mc_routes[i];
        for (unsigned shard = 0; shard < mc_schema_shards(route->msg->service); shard++) {
            char line[128];
            snprintf(line, sizeof line, "%s.%u\n", route->msg->service, shard);
            bool up = live && s_has_line(live, line);
            line[strlen(line) - 1] = 0;
            //  a full list stops growing (64 shards of every service do not fit): snprintf's
            //  count is what it wanted to write, not what it wrote
            if (!up && !strstr(missing, line) && m < sizeof missing - 1) {
                int n = snprintf(missing + m, sizeof missing - m, "%s%s", m ? ", " : "", line);
                m = n < 0 || (size_t) n >= sizeof missing - m ? sizeof missing - 1 : m + (size_t) n;
            }
        }
    }
    if (!live)
        edge_problem(r, 503, "directory_unavailable", "no shard table from the broker yet", NULL, "Retry-After: 1\r\n");
    else
    if (!m && !edge_auth_ready())
        edge_problem(r, 503, "keys_unavailable", "the token signing keys have not been loaded yet", NULL,
                     "Retry-After: 1\r\n");
    else
    if (m) {
        char detail[1200];
        snprintf(detail, sizeof detail, "no live node for: %s", missing);
        edge_problem(r, 503, "service_unavailable", detail, NULL, "Retry-After: 1\r\n");
    }
    else
        edge_respond(r, 200, "application/json", NULL, "{\"status\":\"ready\"}", 18);
    free(live);
}

static void
s_metrics(edge_reply_t *r)
{
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    edge_metrics_render(&out, s_route_label);
    zframe_t *reply = NULL;
    if (edge_client_call("mmi.stats", "", 0, 500, &reply) == EDGE_CALL_REPLY)
        msgpack_sbuffer_write(&out, (char *) zframe_data(reply), zframe_size(reply));
    zframe_destroy(&reply);
    edge_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, out.data, out.size);
    msgpack_sbuffer_destroy(&out);
}

static const char s_swagger_page[] =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Mercato API</title>"
    "<link rel=\"stylesheet\" href=\"/docs/swagger-ui.css\"></head><body><div id=\"ui\"></div>"
    "<script src=\"/docs/swagger-ui-bundle.js\"></script>"
    "<script>window.ui = SwaggerUIBundle({url: '/api/v1/openapi.json', dom_id: '#ui'});</script>"
    "</body></html>";

//  Without the Swagger UI assets, a plain page that still lists every operation.
static void
s_plain_docs(edge_reply_t *r)
{
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    const char *head = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Mercato API</title>"
                       "</head><body><h1>Mercato API</h1><p>The full description is "
                       "<a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a> (OpenAPI 3.1).</p><ul>";
    msgpack_sbuffer_write(&out, head, strlen(head));
    for (size_t i = 0; i < mc_routes_count; i++) {
        char line[512];
        int n = snprintf(line, sizeof line, "<li><code>%s %s</code>: %s</li>", mc_routes[i].method,
                         mc_routes[i].path, mc_routes[i].msg->type);
        if (n > 0 && (size_t) n < sizeof line)
            msgpack_sbuffer_write(&out, line, (size_t) n);
    }
    msgpack_sbuffer_write(&out, "</ul></body></html>", 19);
    edge_respond(r, 200, "text/html; charset=utf-8", NULL, out.data, out.size);
    msgpack_sbuffer_destroy(&out);
}

bool
edge_pages_handle(edge_reply_t *r, const struct mg_request_info *ri, const char *path)
{
    bool get = strcmp(ri->request_method, "GET") == 0 || strcmp(ri->request_method, "HEAD") == 0;
    bool ours = strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 || strcmp(path, "/metrics") == 0
             || strcmp(path, "/api/v1/openapi.json") == 0 || strcmp(path, "/docs") == 0
             || strncmp(path, "/docs/", 6) == 0 || strcmp(path, "/.well-known/jwks.json") == 0;
    if (!ours)
        return false;
    if (!get) {
        edge_problem(r, 405, "method_not_allowed", "this resource supports GET and HEAD only", NULL,
                     "Allow: GET, HEAD\r\n");
        return true;
    }
    if (strcmp(path, "/healthz") == 0)
        edge_respond(r, 200, "application/json", NULL, "{\"status\":\"up\"}", 15);
    else
    if (strcmp(path, "/.well-known/jwks.json") == 0) {
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        if (edge_auth_jwks(&out))
            edge_respond(r, 200, "application/jwk-set+json", "Cache-Control: max-age=60\r\n", out.data, out.size);
        else
            edge_problem(r, 503, "keys_unavailable", "the identity service has not published its keys yet", NULL,
                         "Retry-After: 1\r\n");
        msgpack_sbuffer_destroy(&out);
    }
    else
    if (strcmp(path, "/readyz") == 0)
        s_readyz(r);
    else
    if (strcmp(path, "/metrics") == 0)
        s_metrics(r);
    else
    if (strcmp(path, "/api/v1/openapi.json") == 0)
        edge_respond(r, 200, "application/json", NULL, mc_openapi_json, strlen(mc_openapi_json));
    else
    if (strcmp(path, "/docs") == 0) {
        if (s_assets[0].data && s_assets[1].data)
            edge_respond(r, 200, "text/html; charset=utf-8", NULL, s_swagger_page, sizeof s_swagger_page - 1);
        else
            s_plain_docs(r);
    }
    else {
        for (size_t i = 0; i < sizeof s_assets / sizeof *s_assets; i++)
            if (strcmp(path + 6, s_assets[i].name) == 0 && s_assets[i].data) {
                edge_respond(r, 200, s_assets[i].type, "Cache-Control: max-age=86400\r\n", s_assets[i].data,
                             s_assets[i].size);
                return true;
            }
        edge_problem(r, 404, "not_found", "no resource at this path", NULL, NULL);
    }
    return true;
}
