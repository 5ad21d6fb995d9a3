#include "mc_plane.h"

#include "mc_config.h"
#include "mc_log.h"

#include <errno.h>
#include <stdatomic.h>
#include <sys/stat.h>

static zcert_t *s_cert;             //  this process's certificate
static char *s_server_key;          //  the broker's public key, Z85
static zactor_t *s_auth;            //  the ZAP handler, in the broker only

static const char *s_roles[] = { "", "self", "edge", "node", "relay", "ops" };

mc_peer_t
mc_peer_parse(const char *text, size_t len)
{
    for (int r = MC_PEER_EDGE; r <= MC_PEER_OPS; r++)
        if (strlen(s_roles[r]) == len && memcmp(s_roles[r], text, len) == 0)
            return (mc_peer_t) r;
    return MC_PEER_NONE;
}

const char *
mc_peer_name(mc_peer_t role)
{
    return role >= MC_PEER_NONE && role <= MC_PEER_OPS ? s_roles[role] : "";
}

const char *
mc_plane_dir(const char *data_dir)
{
    static char dir[4096];
    const char *keys = getenv("MERCATO_KEYS_DIR");
    if (keys && *keys)
        snprintf(dir, sizeof dir, "%s", keys);
    else
        snprintf(dir, sizeof dir, "%s/plane", data_dir ? data_dir : mc_config_env("MERCATO_DATA_DIR", "./data"));
    return dir;
}

static bool
s_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > MC_PEER_NAME_MAX || streq(name, "broker"))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char) name[i]) && !strchr("._-", name[i]))
            return false;
    return true;
}

static bool
s_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

//  Writes cert's secret file (0600) at secret and, when public_path is set, its public file.
static int
s_save(zcert_t *cert, const char *secret, const char *public_path)
{
    if (zcert_save_secret(cert, secret) || chmod(secret, 0600)
    ||  (public_path && zcert_save_public(cert, public_path))) {
        mc_error("cannot write key", "\"path\":\"%s\",\"error\":\"%s\"", secret, strerror(errno));
        return -1;
    }
    return 0;
}

static int
s_add(const char *dir, const char *role, const char *name, bool keep)
{
    char secret[4200], public_path[4200];
    snprintf(secret, sizeof secret, "%s/%s.cert_secret", dir, name);
    snprintf(public_path, sizeof public_path, "%s/allow/%s.cert", dir, name);
    if (s_exists(secret) || s_exists(public_path)) {
        if (keep)
            return 0;
        errno = EEXIST;
        return -1;
    }
    zcert_t *cert = zcert_new();
    if (!cert)
        return -1;
    zcert_set_meta(cert, "role", "%s", role);
    zcert_set_meta(cert, "name", "%s", name);
    int rc = s_save(cert, secret, public_path);
    zcert_destroy(&cert);
    return rc;
}

static int
s_folders(const char *dir)
{
    char allow[4200];
    snprintf(allow, sizeof allow, "%s/allow", dir);
    if (mc_config_mkdirs(allow) || chmod(dir, 0700) || chmod(allow, 0700)) {
        mc_error("cannot make key folder", "\"path\":\"%s\",\"error\":\"%s\"", dir, strerror(errno));
        return -1;
    }
    return 0;
}

int
mc_plane_keygen(const char *dir)
{
    if (s_folders(dir))
        return -1;
    char secret[4200], public_path[4200];
    snprintf(secret, sizeof secret, "%s/broker.cert_secret", dir);
    snprintf(public_path, sizeof public_path, "%s/broker.cert", dir);
    if (!s_exists(secret)) {
        zcert_t *cert = zcert_new();
        if (!cert)
            return -1;
        zcert_set_meta(cert, "role", "broker");
        int rc = s_save(cert, secret, public_path);
        zcert_destroy(&cert);
        if (rc)
            return -1;
    }
    for (int r = MC_PEER_EDGE; r <= MC_PEER_OPS; r++)
        if (s_add(dir, s_roles[r], s_roles[r], true))
            return -1;
    return 0;
}

int
mc_plane_add(const char *dir, const char *role, const char *name)
{
    mc_peer_t r = mc_peer_parse(role, strlen(role));
    if (r == MC_PEER_NONE || !s_name_ok(name)) {
        errno = EINVAL;
        return -1;
    }
    if (s_folders(dir))
        return -1;
    return s_add(dir, role, name, false);
}

int
mc_plane_init(const char *dir, const char *name, bool as_server)
{
    mc_plane_shutdown();
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.cert_secret", dir, as_server ? "broker" : name);
    s_cert = zcert_load(path);
    snprintf(path, sizeof path, "%s/broker.cert", dir);
    zcert_t *server = zcert_load(path);
    if (!s_cert || !server) {
        mc_error("no key for the internal plane: run mercato-keys",
                 "\"dir\":\"%s\",\"missing\":\"%s\"", dir, s_cert ? path : name);
        zcert_destroy(&server);
        mc_plane_shutdown();
        return -1;
    }
    s_server_key = strdup(zcert_public_txt(server));
    zcert_destroy(&server);
    if (as_server) {
        snprintf(path, sizeof path, "%s/allow", dir);
        s_auth = zactor_new(zauth, NULL);
        if (!s_auth || zstr_sendx(s_auth, "CURVE", path, NULL) || zsock_wait(s_auth)) {
            mc_error("cannot start the ZAP handler", "\"dir\":\"%s\"", path);
            mc_plane_shutdown();
            return -1;
        }
    }
    return 0;
}

int
mc_plane_serve(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/allow", dir);
    zactor_destroy(&s_auth);
    s_auth = zactor_new(zauth, NULL);
    if (!s_auth || zstr_sendx(s_auth, "CURVE", path, NULL) || zsock_wait(s_auth)) {
        mc_error("cannot start the ZAP handler", "\"dir\":\"%s\"", path);
        zactor_destroy(&s_auth);
        return -1;
    }
    return 0;
}

const char *
mc_plane_public_key(void)
{
    return s_cert ? zcert_public_txt(s_cert) : "";
}

void
mc_plane_client_to(zsock_t *sock, const char *server_key)
{
    assert(s_cert);
    mc_plane_client_with(sock, s_cert, server_key);
}

void
mc_plane_shutdown(void)
{
    zactor_destroy(&s_auth);
    zcert_destroy(&s_cert);
    zstr_free(&s_server_key);
}

void
mc_plane_client_with(zsock_t *sock, zcert_t *cert, const char *server_key)
{
    zcert_apply(cert, sock);
    zsock_set_curve_serverkey(sock, server_key);
}

void
mc_plane_client(zsock_t *sock)
{
    assert(s_cert && s_server_key);
    mc_plane_client_with(sock, s_cert, s_server_key);
}

void
mc_plane_server(zsock_t *sock)
{
    assert(s_cert && s_auth);
    zcert_apply(s_cert, sock);
    zsock_set_curve_server(sock, 1);
    zsock_set_zap_domain(sock, "mercato");
}

void
mc_plane_peer(zmq_msg_t *part, mc_peer_info_t *peer)
{
    const char *role = zmq_msg_gets(part, "role");
    const char *name = zmq_msg_gets(part, "name");
    const char *key = zmq_msg_gets(part, "User-Id");
    peer->role = role ? mc_peer_parse(role, strlen(role)) : MC_PEER_NONE;
    snprintf(peer->name, sizeof peer->name, "%s", name ? name : "");
    snprintf(peer->key, sizeof peer->key, "%s", key ? key : "");
    if (peer->role == MC_PEER_NONE)
        peer->name[0] = peer->key[0] = 0;
}

struct _mc_plane_watch_t {
    zsock_t *sock;          //  the watched socket (not ours)
    zsock_t *monitor;       //  its handshake failures, from zmq_socket_monitor
    char *endpoint;
};

mc_plane_watch_t *
mc_plane_watch_new(zsock_t *sock, const char *endpoint)
{
    //  a name never used before in this process: monitors are inproc endpoints
    static atomic_uint s_watches;
    char name[64];
    snprintf(name, sizeof name, "inproc://mc-plane-watch-%u", atomic_fetch_add(&s_watches, 1));
    mc_plane_watch_t *self = calloc(1, sizeof *self);
    if (!self || zmq_socket_monitor(zsock_resolve(sock), name, ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) != 0) {
        free(self);
        return NULL;
    }
    self->sock = sock;
    self->endpoint = strdup(endpoint);
    self->monitor = zsock_new(ZMQ_PAIR);
    if (!self->endpoint || !self->monitor || zsock_connect(self->monitor, "%s", name) != 0) {
        mc_plane_watch_destroy(&self);
        return NULL;
    }
    return self;
}

bool
mc_plane_watch_check(mc_plane_watch_t *self)
{
    if (!self)
        return false;
    bool failed = false;
    zmq_msg_t part;
    zmq_msg_init(&part);
    //  each event is two parts (event and value, then the endpoint); any one is enough
    while (zmq_msg_recv(&part, zsock_resolve(self->monitor), ZMQ_DONTWAIT) >= 0)
        failed = true;
    zmq_msg_close(&part);
    if (!failed)
        return false;
    //  at most one line a second: the impostor may answer every attempt the same way
    static _Thread_local uint64_t logged_at;
    uint64_t now = zclock_mono();
    if (now - logged_at >= 1000) {
        logged_at = now;
        char ep[160];
        mc_warn("broker handshake failed, connecting afresh", "\"endpoint\":\"%s\"",
                mc_log_escape(ep, sizeof ep, self->endpoint, strlen(self->endpoint)));
    }
    zsock_disconnect(self->sock, "%s", self->endpoint);
    zsock_connect(self->sock, "%s", self->endpoint);
    return true;
}

void
mc_plane_watch_destroy(mc_plane_watch_t **self_p)
{
    mc_plane_watch_t *self = *self_p;
    if (!self)
        return;
    if (self->sock)
        zmq_socket_monitor(zsock_resolve(self->sock), NULL, 0);
    zsock_destroy(&self->monitor);
    free(self->endpoint);
    free(self);
    *self_p = NULL;
}
