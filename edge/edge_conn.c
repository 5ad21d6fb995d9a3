#include "edge_conn.h"

#include "edge_metrics.h"
#include "edge_response.h"
#include "mc_log.h"
#include "mc_util.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

//  How often the watchdog looks: the deadline is kept to within this.
#define EDGE_CONN_TICK_MS 50

typedef struct {
    int fd;                         //  the accepted socket; -1: the entry is free
    char addr[48];                  //  client address as civetweb prints it (remote_addr)
    int port;                       //  client port
    uint64_t deadline;              //  mc_mono_ms by which the request must have arrived
    bool held;                      //  the request is being served: no deadline
    bool expired;                   //  the watchdog shut the reading side
} slot_t;

static edge_conn_config_t s_config;
static slot_t *s_slots;
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t s_watchdog;
static atomic_bool s_running;
static atomic_int s_port;           //  the edge's port, 0 until known
static atomic_int s_listen_fd = -1; //  the socket civetweb accepts on, once seen
static atomic_ullong s_refused;     //  refused since the last log line
static atomic_ullong s_logged_at;   //  mc_mono_ms of that line

//  client address and port of sa, as civetweb renders them
static void
s_peer(const struct sockaddr *sa, socklen_t salen, char *addr, size_t addrsz, int *port)
{
    *addr = 0;
    getnameinfo(sa, salen, addr, (socklen_t) addrsz, NULL, 0, NI_NUMERICHOST);
    *port = sa->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *) sa)->sin_port)
          : sa->sa_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *) sa)->sin6_port) : 0;
}

static bool
s_same_peer(const slot_t *c)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    if (getpeername(c->fd, (struct sockaddr *) &sa, &len))
        return false;
    char addr[48];
    int port;
    s_peer((struct sockaddr *) &sa, len, addr, sizeof addr, &port);
    return port == c->port && strcmp(addr, c->addr) == 0;
}

static void *
s_watch(void *arg)
{
    while (atomic_load(&s_running)) {
        uint64_t now = mc_mono_ms();
        pthread_mutex_lock(&s_lock);
        for (size_t i = 0; i < s_config.capacity; i++) {
            slot_t *c = &s_slots[i];
            //  under the lock the descriptor is still the connection's, as closed() runs before
            //  civetweb closes it; the peer is checked all the same, so that a close we were not
            //  told of (civetweb stopping) cannot make us shut another socket given the same
            //  number. The entry stays until closed(): its worker may still point at it.
            if (c->fd >= 0 && !c->held && !c->expired && now >= c->deadline) {
                if (s_same_peer(c))
                    shutdown(c->fd, SHUT_RD);
                c->expired = true;
            }
        }
        pthread_mutex_unlock(&s_lock);
        struct timespec tick = { 0, EDGE_CONN_TICK_MS * 1000000L };
        nanosleep(&tick, NULL);
    }
    return NULL;
}

int
edge_conn_start(const edge_conn_config_t *config)
{
    s_config = *config;
    s_slots = calloc(s_config.capacity, sizeof *s_slots);
    if (!s_slots)
        return -1;
    for (size_t i = 0; i < s_config.capacity; i++)
        s_slots[i].fd = -1;
    atomic_store(&s_running, true);
    if (pthread_create(&s_watchdog, NULL, s_watch, NULL)) {
        atomic_store(&s_running, false);
        free(s_slots);
        s_slots = NULL;
        return -1;
    }
    return 0;
}

void
edge_conn_listening(int port)
{
    atomic_store(&s_port, port);
}

void
edge_conn_stop(void)
{
    if (!atomic_exchange(&s_running, false))
        return;
    pthread_join(s_watchdog, NULL);
    atomic_store(&s_port, 0);
}

//  True when fd is the edge's listening socket (learnt on the first accept after listening()).
static bool
s_is_edge_listener(int fd)
{
    int known = atomic_load(&s_listen_fd);
    if (known >= 0)
        return fd == known;
    int port = atomic_load(&s_port);
    if (!port)
        return false;
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *) &sa, &len))
        return false;
    int bound = sa.ss_family == AF_INET ? ntohs(((struct sockaddr_in *) &sa)->sin_port)
              : sa.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *) &sa)->sin6_port) : -1;
    if (bound != port)
        return false;
    atomic_store(&s_listen_fd, fd);
    return true;
}

//  Answers a refused connection from the accepting thread and closes it. The socket is new, so
//  its send buffer has room for the whole answer; what the client already sent is read first,
//  because closing over unread data would reset the connection before the client reads ours.
static void
s_refuse(int fd, int status, const char *code, const char *detail)
{
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    edge_reply_t r = { .sink = &out, .close = true };
    char id[MC_ULID_LEN + 1];
    mc_ulid(id, mc_now_ms());
    snprintf(r.request_id, sizeof r.request_id, "%s", id);
    edge_problem(&r, status, code, detail, NULL, "Retry-After: 1\r\n");
    ssize_t sent = send(fd, out.data, out.size, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void) sent;    //  a client that cannot take it loses only the explanation
    msgpack_sbuffer_destroy(&out);
    char drain[4096];
    for (int i = 0; i < 4 && recv(fd, drain, sizeof drain, MSG_DONTWAIT) > 0; i++)
        ;
    close(fd);
    edge_metrics_rejected("connections");
    //  one line a second at most: a flood of refusals must not become a flood of logs
    atomic_fetch_add(&s_refused, 1);
    uint64_t now = mc_mono_ms(), last = atomic_load(&s_logged_at);
    if (now - last >= 1000 && atomic_compare_exchange_strong(&s_logged_at, &last, now))
        mc_warn("connections refused", "\"status\":%d,\"code\":\"%s\",\"count\":%llu", status, code,
                (unsigned long long) atomic_exchange(&s_refused, 0));
}

//  Takes a table entry for the accepted socket fd from sa. 0, or -1 when it was refused (and closed).
static int
s_admit(int fd, const struct sockaddr *sa, socklen_t salen)
{
    char addr[48];
    int port;
    //  the same rendering as civetweb's sockaddr_to_string, so s_slot() finds the entry by it
    s_peer(sa, salen, addr, sizeof addr, &port);
    pthread_mutex_lock(&s_lock);
    slot_t *free_slot = NULL;
    int open = 0;
    for (size_t i = 0; i < s_config.capacity; i++) {
        if (s_slots[i].fd < 0) {
            if (!free_slot)
                free_slot = &s_slots[i];
        }
        else
        if (strcmp(s_slots[i].addr, addr) == 0)
            open++;
    }
    bool over = s_config.max_per_client > 0 && open >= s_config.max_per_client;
    if (!over && free_slot) {
        *free_slot = (slot_t) { .fd = fd, .port = port, .deadline = mc_mono_ms() + (uint64_t) s_config.request_ms };
        snprintf(free_slot->addr, sizeof free_slot->addr, "%s", addr);
    }
    pthread_mutex_unlock(&s_lock);
    if (over) {
        char detail[160];
        snprintf(detail, sizeof detail, "this address already has %d connections open; reuse or close one",
                 s_config.max_per_client);
        s_refuse(fd, 429, "too_many_connections", detail);
        return -1;
    }
    if (!free_slot) {
        s_refuse(fd, 503, "too_many_connections", "the edge holds as many connections as it can serve");
        return -1;
    }
    return 0;
}

//  libcivetweb calls accept() through the dynamic linker, which finds this definition in the
//  executable first. For any socket but the edge's listener it is plain accept().
int
accept(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len)
{
    struct sockaddr_storage own;
    socklen_t own_len = sizeof own;
    struct sockaddr *sa = addr.__sockaddr__ && len ? addr.__sockaddr__ : (struct sockaddr *) &own;
    socklen_t *salen = addr.__sockaddr__ && len ? len : &own_len;
    int s = accept4(fd, sa, salen, 0);
    if (s < 0 || !s_slots || !s_is_edge_listener(fd))
        return s;
    if (s_admit(s, sa, *salen) == 0)
        return s;
    //  civetweb's accept loop takes a failed accept as nothing to do and polls again
    errno = EAGAIN;
    return -1;
}

//  The entry of civetweb's connection: found by the client's address and port, which civetweb
//  fills in before it calls any callback (there is no other way to learn its descriptor), then
//  kept in the connection's user data (civetweb clears that for each new connection).
static slot_t *
s_slot(const struct mg_connection *conn)
{
    if (!s_slots)
        return NULL;
    slot_t *c = mg_get_user_connection_data(conn);
    if (c)
        return c;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (!ri)
        return NULL;
    pthread_mutex_lock(&s_lock);
    for (size_t i = 0; i < s_config.capacity && !c; i++)
        if (s_slots[i].fd >= 0 && s_slots[i].port == ri->remote_port && strcmp(s_slots[i].addr, ri->remote_addr) == 0)
            c = &s_slots[i];
    pthread_mutex_unlock(&s_lock);
    mg_set_user_connection_data(conn, c);
    return c;
}

void
edge_conn_closed(const struct mg_connection *conn)
{
    slot_t *c = s_slot(conn);
    if (!c)
        return;
    pthread_mutex_lock(&s_lock);
    *c = (slot_t) { .fd = -1 };
    pthread_mutex_unlock(&s_lock);
}

void
edge_conn_reading(const struct mg_connection *conn, bool reading)
{
    slot_t *c = s_slot(conn);
    if (!c)
        return;
    pthread_mutex_lock(&s_lock);
    c->held = !reading;
    pthread_mutex_unlock(&s_lock);
}

void
edge_conn_answered(const struct mg_connection *conn)
{
    slot_t *c = s_slot(conn);
    if (!c)
        return;
    pthread_mutex_lock(&s_lock);
    c->deadline = mc_mono_ms() + (uint64_t) s_config.request_ms;
    c->held = false;
    pthread_mutex_unlock(&s_lock);
}

bool
edge_conn_expired(const struct mg_connection *conn)
{
    slot_t *c = s_slot(conn);
    if (!c)
        return false;
    pthread_mutex_lock(&s_lock);
    //  past the deadline counts even before the watchdog's next look
    bool expired = c->expired || (!c->held && mc_mono_ms() >= c->deadline);
    pthread_mutex_unlock(&s_lock);
    return expired;
}
