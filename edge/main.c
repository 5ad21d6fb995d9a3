/*  mercato-edge: the HTTP/JSON front door (civetweb).

    usage: mercato-edge [--port N] [--broker ENDPOINT] [--data DIR] [--port-file FILE]
                        [--keys DIR] [--key NAME]
    Its connection to the broker proves the plane key NAME (default "edge") from the key folder
    (mc_plane.h; default $MERCATO_KEYS_DIR or DIR/plane); without it the edge does not start.
    Listens on 127.0.0.1 only; TLS terminates in front of it (civetweb's TLS does not load
    against OpenSSL 3). Port 0 picks a free port, written to --port-file once listening. */
#include "edge_client.h"
#include "edge_conn.h"
#include "edge_http.h"
#include "edge_identity.h"
#include "edge_auth.h"
#include "mc_util.h"
#include "edge_pages.h"
#include "mc_config.h"
#include "mc_log.h"
#include "mc_plane.h"

#include <civetweb.h>
#include <czmq.h>

static int
s_log_message(const struct mg_connection *conn, const char *message)
{
    char esc[512];
    mc_warn("http server", "\"detail\":\"%s\"", mc_log_escape(esc, sizeof esc, message, strlen(message)));
    return 1;
}

static void
s_exit_thread(const struct mg_context *ctx, int thread_type, void *user_ptr)
{
    edge_client_thread_exit();
}

//  Authentication is ours (bearer tokens, edge_auth.c). Without a handler of its own civetweb
//  looks for a .htpasswd where each request's path would be on disk: a failed stat of
//  "/.htpasswd" per request, and a file put there would have put Basic auth before the API.
static int
s_no_basic_auth(struct mg_connection *conn, void *arg)
{
    (void) conn;
    (void) arg;
    return 1;
}

int
main(int argc, char **argv)
{
    mc_log_init("edge");
    const char *port = mc_config_env("MERCATO_HTTP_PORT", "8080");
    const char *broker = mc_config_env("MERCATO_BROKER_ENDPOINT", MC_DEFAULT_BROKER);
    const char *port_file = NULL;
    const char *data = NULL, *keys = NULL, *key = "edge";
    for (int i = 1; i < argc; i++) {
        if (streq(argv[i], "--port") && i + 1 < argc)
            port = argv[++i];
        else
        if (streq(argv[i], "--broker") && i + 1 < argc)
            broker = argv[++i];
        else
        if (streq(argv[i], "--data") && i + 1 < argc)
            data = argv[++i];   //  the edge keeps no state; its plane key is found there
        else
        if (streq(argv[i], "--keys") && i + 1 < argc)
            keys = argv[++i];
        else
        if (streq(argv[i], "--key") && i + 1 < argc)
            key = argv[++i];
        else
        if (streq(argv[i], "--port-file") && i + 1 < argc)
            port_file = argv[++i];
        else {
            fprintf(stderr, "usage: mercato-edge [--port N] [--broker ENDPOINT] [--data DIR] [--port-file FILE] [--keys DIR] [--key NAME]\n");
            return 2;
        }
    }
    zsys_init();
    zsys_set_logstream(stderr);
    zsys_handler_set(NULL);
    mc_config_signals();
    if (mc_plane_init(keys ? keys : mc_plane_dir(data), key, false))
        return 1;
    edge_client_init(broker);
    const char *log = mc_config_env("MERCATO_ACCESS_LOG", "all");
    edge_config_t config = {
        .access_log = streq(log, "off") ? EDGE_LOG_OFF : streq(log, "errors") ? EDGE_LOG_ERRORS : EDGE_LOG_ALL,
        .timeout_ms = (int) mc_config_env_long("MERCATO_REQUEST_TIMEOUT_MS", 5000, 10, 600000),
        .docs_dir = mc_config_env("MERCATO_DOCS_DIR", NULL),
        .cors_origin = mc_config_env("MERCATO_CORS_ORIGINS", NULL),
    };
    edge_http_init(&config);
    edge_identity_init();
    edge_auth_init();
    edge_pages_init(config.docs_dir);

    char listen[64], threads[16], request_ms[16], head_max[16], queue[16];
    //  loopback unless told otherwise (a container publishes its port from 0.0.0.0)
    snprintf(listen, sizeof listen, "%s:%s", mc_config_env("MERCATO_HTTP_BIND", "127.0.0.1"), port);
    //  one thread per keep-alive connection: size it above the connections we accept
    long nthreads = mc_config_env_long("MERCATO_HTTP_THREADS", 256, 4, 4096);
    snprintf(threads, sizeof threads, "%ld", nthreads);
    //  accepted connections waiting for a worker thread
    const long nqueue = 32;
    snprintf(queue, sizeof queue, "%ld", nqueue);
    edge_conn_config_t conns = {
        //  half the threads by default: one address cannot take them all, and wrk's 64
        //  connections in scripts/bench stay well within it
        .max_per_client = (int) mc_config_env_long("MERCATO_HTTP_MAX_CONNECTIONS_PER_CLIENT", nthreads / 2, 0, 1000000),
        .request_ms = (int) mc_config_env_long("MERCATO_HTTP_REQUEST_TIMEOUT_MS", 10000, 100, 600000),
        .capacity = (size_t) (nthreads + nqueue + 16),
    };
    //  civetweb's own timeouts are backstops a second behind edge_conn's deadline, so that the
    //  deadline, not civetweb's per-read clock, ends a slow request (and answers 408)
    snprintf(request_ms, sizeof request_ms, "%d", conns.request_ms + 1000);
    snprintf(head_max, sizeof head_max, "%d", EDGE_HTTP_HEAD_MAX);
    if (edge_conn_start(&conns)) {
        mc_error("cannot start the connection watchdog", NULL);
        return 1;
    }
    const char *options[] = {
        "listening_ports", listen,
        "num_threads", threads,
        "connection_queue", queue,
        "tcp_nodelay", "1",
        "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", request_ms,
        "request_timeout_ms", request_ms,
        "max_request_size", head_max,
        "access_control_allow_origin", "",
        "access_control_allow_methods", "",
        "access_control_allow_headers", "",
        "decode_url", "yes",
        NULL
    };
    struct mg_callbacks callbacks;
    memset(&callbacks, 0, sizeof callbacks);
    callbacks.log_message = s_log_message;
    callbacks.exit_thread = s_exit_thread;
    callbacks.http_error = edge_http_error;
    callbacks.connection_close = edge_conn_closed;
    mg_init_library(0);
    struct mg_context *ctx = mg_start(&callbacks, NULL, options);
    if (!ctx) {
        edge_conn_stop();
        mc_error("cannot listen", "\"address\":\"%s\"", listen);
        return 1;
    }
    mg_set_request_handler(ctx, "/", edge_http_handle, NULL);
    mg_set_auth_handler(ctx, "/", s_no_basic_auth, NULL);
    struct mg_server_port ports[4];
    int nports = mg_get_server_ports(ctx, 4, ports);
    int bound = nports > 0 ? ports[0].port : atoi(port);
    char bound_s[16];
    snprintf(bound_s, sizeof bound_s, "%d", bound);
    edge_conn_listening(bound);
    if (port_file && mc_config_write_file(port_file, bound_s)) {
        mc_error("cannot write port file", "\"path\":\"%s\"", port_file);
        edge_conn_stop();
        mg_stop(ctx);
        return 1;
    }
    mc_info("edge listening", "\"url\":\"http://127.0.0.1:%d\",\"broker\":\"%s\"", bound, broker);
    while (!zsys_interrupted)
        zclock_sleep(100);
    mc_info("edge stopping", NULL);
    edge_conn_stop();
    mg_stop(ctx);
    mg_exit_library();
    edge_auth_stop();
    edge_client_stop();
    mc_plane_shutdown();
    return 0;
}
