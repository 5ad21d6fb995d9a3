/*  mc_plane: who may speak on the internal plane, and how a socket proves it (CONTRACT §9).

    Every internal ZeroMQ connection is CURVE-encrypted and authenticated: the broker is a CURVE
    server, every other peer a CURVE client whose public key must be on the broker's allow-list
    (czmq zauth over a zcertstore folder). Each allowed key carries one role in its certificate
    metadata; the broker reads it from the ZAP metadata of every message and stamps the requests
    it forwards with it, so an actor knows which kind of peer asserted what.

    A cluster's key folder (mode 0700), made by mercato-keys:
        broker.cert             the broker's public certificate, which clients need
        broker.cert_secret      the broker's secret certificate (mode 0600)
        <name>.cert_secret      a peer's secret certificate (mode 0600): edge, node, relay, ops
        allow/<name>.cert       the allow-list: one public certificate per peer, with metadata
                                "role" (edge | node | relay | ops) and "name" (its key id)
    Another host gets only what it needs: a node's host broker.cert and node.cert_secret (or a
    key of its own made with `mercato-keys DIR add node NAME`); the broker's host broker.cert_secret
    and allow/. The allow-list is re-read when the folder changes, so a key added while the
    broker runs is accepted and a removed one refused for new connections.

    Caveats: CURVE does not apply to inproc sockets (within one process nothing is to prove);
    mc_plane_init must run before any plane socket is made and mc_plane_shutdown after the last
    one is gone. */
#ifndef MC_PLANE_H
#define MC_PLANE_H

#include <czmq.h>

//  The kind of peer a message came from. SELF is a process's own runtime (ticks, replies to its
//  requests); NONE a peer with no allowed key, which the plane never lets through.
typedef enum {
    MC_PEER_NONE = 0,
    MC_PEER_SELF,
    MC_PEER_EDGE,
    MC_PEER_NODE,
    MC_PEER_RELAY,
    MC_PEER_OPS
} mc_peer_t;

//  Longest key id (certificate "name") the plane accepts.
#define MC_PEER_NAME_MAX 63

typedef struct {
    mc_peer_t role;                     //  from the certificate's "role" metadata
    char name[MC_PEER_NAME_MAX + 1];    //  the certificate's "name": which key it was
    char key[41];                       //  its CURVE public key (Z85), ZAP's User-Id
} mc_peer_info_t;

//  "edge" -> MC_PEER_EDGE ...; MC_PEER_NONE for anything else (SELF has no name on the wire).
mc_peer_t mc_peer_parse(const char *text, size_t len);
//  The wire name of a role: "edge", "node", "relay", "ops", "self"; "" for NONE.
const char *mc_peer_name(mc_peer_t role);

//  The key folder a process uses: $MERCATO_KEYS_DIR, else <data_dir>/plane (data_dir NULL:
//  $MERCATO_DATA_DIR, else ./data). The result is static storage.
const char *mc_plane_dir(const char *data_dir);

//  Creates a cluster's keys in dir: the broker's certificate and one key per role (edge, node,
//  relay, ops), each on the allow-list. Keys that exist are kept, so running it again is
//  harmless. Returns 0, or -1 with errno (and a logged reason) when a file cannot be written.
int mc_plane_keygen(const char *dir);

//  Adds a key called name with role (one of edge, node, relay, ops) to dir and its allow-list.
//  Returns 0; -1 when role or name is invalid (EINVAL), the name is taken (EEXIST) or a write
//  fails.
int mc_plane_add(const char *dir, const char *role, const char *name);

//  Loads this process's identity from dir: the certificate <name>.cert_secret and the broker's
//  public key; as_server also loads broker.cert_secret and starts the ZAP handler over allow/.
//  Returns 0, or -1 with a logged reason (missing or unreadable key) and nothing set up: a
//  process must not run unauthenticated, so callers exit.
int mc_plane_init(const char *dir, const char *name, bool as_server);

//  Stops the ZAP handler and forgets the keys; harmless when not initialised.
void mc_plane_shutdown(void);

//  Makes sock a CURVE client of the broker with this process's key. Call before connecting.
void mc_plane_client(zsock_t *sock);

//  Makes sock a CURVE server checked against the allow-list. Call before binding.
void mc_plane_server(zsock_t *sock);

//  A node's front is a CURVE server too, proving the node's own key to its clients (which find
//  it in the directory) and checking theirs against the allow-list like the broker. Starts the
//  ZAP handler; call after mc_plane_init. Returns 0, or -1 with a logged reason.
int mc_plane_serve(const char *dir);
//  This process's own public key (Z85).
const char *mc_plane_public_key(void);
//  As mc_plane_client, for a connection to a node whose front proves server_key (Z85): set it
//  before each zsock_connect, which copies the socket's options.
void mc_plane_client_to(zsock_t *sock, const char *server_key);

//  As mc_plane_client, with a given certificate and server public key (Z85): for tests and
//  tools that act as several peers.
void mc_plane_client_with(zsock_t *sock, zcert_t *cert, const char *server_key);

//  The peer a received message part came from, read from its ZAP metadata. A part without
//  plane metadata gives MC_PEER_NONE.
void mc_plane_peer(zmq_msg_t *part, mc_peer_info_t *peer);

//  A watch on a plane client's connection. libzmq (4.3) gives a connection up for good when its
//  handshake fails on a protocol error, which is what a ZeroMQ socket without CURVE on the
//  broker's address causes: a local user who binds it while the broker restarts would cut a
//  process off the plane until it restarts. mc_plane_watch_new attaches a watch to sock, which
//  is connected (or about to be) to endpoint; NULL when the monitor cannot be set up.
typedef struct _mc_plane_watch_t mc_plane_watch_t;
mc_plane_watch_t *mc_plane_watch_new(zsock_t *sock, const char *endpoint);

//  Reads what the watch saw (one non-blocking read when nothing happened: call it now and then,
//  from the socket's own thread) and, after such a failure, connects sock afresh. Returns true
//  when it did. Harmless with NULL.
bool mc_plane_watch_check(mc_plane_watch_t *self);

//  Stops watching; call before destroying the socket.
void mc_plane_watch_destroy(mc_plane_watch_t **self_p);

#endif
