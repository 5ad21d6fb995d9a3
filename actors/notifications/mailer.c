#include "mailer.h"

#include "mc_config.h"
#include "mc_envelope.h"
#include "mc_log.h"
#include "mc_proto.h"
#include "mc_schema.h"
#include "mc_util.h"

#include <curl/curl.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#define SERVICE "mailer.0"
#define CONNECT_TIMEOUT_MS 5000L
#define TRANSFER_TIMEOUT_MS 20000L
//  Sockets libcurl may ask us to watch at once; transfers beyond what they allow wait in curl.
#define SOCKETS_MAX 64
#define CONNECTIONS_MAX 16L

typedef struct {
    mailer_args_t args;         //  configuration
    const char *url;            //  MERCATO_SMTP_URL, or NULL: mails are logged
    char from[256];             //  sender address
    zsock_t *broker;            //  DEALER to the node's front as a worker; replaced on reconnect
    CURLM *multi;               //  the transfers
    struct {
        curl_socket_t fd;
        short events;           //  ZMQ_POLLIN / ZMQ_POLLOUT wanted
    } socks[SOCKETS_MAX];       //  what libcurl wants watched
    size_t nsocks;
    int64_t timer_at;           //  mono ms at which libcurl wants its timeout call, or -1
    struct _transfer_t *transfers;      //  mails on their way
    uint64_t sent, failed, logged, refused;     //  counters
} mailer_t;

//  One mail on its way, and where its answer goes.
typedef struct _transfer_t {
    mailer_t *mailer;
    CURL *easy;                 //  its transfer
    struct _transfer_t *prev, *next;    //  in mailer->transfers
    zframe_t *client, *rid;     //  the front's routing of the caller
    char id[MC_REQUEST_ID_MAX + 1];     //  the request's message id
    char note[MC_REQUEST_ID_MAX + 1];   //  the notification, for logs
    msgpack_sbuffer message;    //  the mail as it goes on the wire
    size_t at;                  //  how much of it libcurl has read
    struct curl_slist *rcpt;    //  its one recipient
    char error[CURL_ERROR_SIZE];
} transfer_t;

// --- the message --------------------------------------------------------------------------

static void
s_write(msgpack_sbuffer *out, const char *s)
{
    msgpack_sbuffer_write(out, s, strlen(s));
}

static void
s_write_str(msgpack_sbuffer *out, mc_str_t s)
{
    if (s.len)
        msgpack_sbuffer_write(out, s.ptr, s.len);
}

//  Standard base64 (RFC 2045) of len bytes; out holds 4 * ceil(len / 3) + 1.
static size_t
s_base64(char *out, const unsigned char *in, size_t len)
{
    size_t n = mc_b64url_encode(out, in, len);
    for (size_t i = 0; i < n; i++)
        out[i] = out[i] == '-' ? '+' : out[i] == '_' ? '/' : out[i];
    while (n % 4)
        out[n++] = '=';
    out[n] = 0;
    return n;
}

static void
s_subject(msgpack_sbuffer *out, mc_str_t subject)
{
    char line[512];
    size_t n = subject.len < sizeof line ? subject.len : sizeof line - 1;
    bool ascii = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) subject.ptr[i];
        line[i] = c < 0x20 || c == 0x7f ? ' ' : (char) c;
        ascii &= c < 0x80;
    }
    s_write(out, "Subject: ");
    if (ascii) {
        msgpack_sbuffer_write(out, line, n);
        return;
    }
    //  encoded words of at most 45 bytes of text each (under 75 characters), cut between
    //  characters, never inside one
    for (size_t i = 0; i < n;) {
        size_t k = n - i < 45 ? n - i : 45;
        while (i + k < n && k > 1 && ((unsigned char) line[i + k] & 0xc0) == 0x80)
            k--;
        char b64[64];
        s_write(out, i ? "\r\n =?UTF-8?B?" : "=?UTF-8?B?");
        msgpack_sbuffer_write(out, b64, s_base64(b64, (const unsigned char *) line + i, k));
        s_write(out, "?=");
        i += k;
    }
}

void
mailer_message(msgpack_sbuffer *out, const char *from, mc_str_t to, mc_str_t subject, mc_str_t message_id,
               mc_str_t text, uint64_t date_ms)
{
    char date[64];
    time_t t = (time_t) (date_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    s_write(out, "Date: ");
    s_write(out, date);
    s_write(out, "\r\nFrom: Mercato <");
    s_write(out, from);
    s_write(out, ">\r\nTo: <");
    s_write_str(out, to);
    s_write(out, ">\r\n");
    s_subject(out, subject);
    s_write(out, "\r\nMessage-ID: ");
    s_write_str(out, message_id);
    s_write(out, "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                 "Content-Transfer-Encoding: 8bit\r\n\r\n");
    //  SMTP lines end in CRLF; libcurl doubles the dots that start a line
    for (size_t i = 0; i < text.len; i++)
        if (text.ptr[i] == '\n')
            s_write(out, "\r\n");
        else
        if (text.ptr[i] != '\r')
            msgpack_sbuffer_write(out, text.ptr + i, 1);
    if (!text.len || text.ptr[text.len - 1] != '\n')
        s_write(out, "\r\n");
}

// --- the node's front (over inproc) --------------------------------------------------------

//  A command without fields (DISCONNECT) to the front.
static void
s_send(mailer_t *self, mc_proto_id_t id)
{
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    m.id = id;
    mc_proto_msg_send(&m, self->broker);
}

static void
s_connect(mailer_t *self)
{
    zsock_destroy(&self->broker);
    self->broker = zsock_new(ZMQ_DEALER);
    mc_proto_socket_setup(self->broker);
    zsock_connect(self->broker, "%s", self->args.broker);
    mc_proto_msg_t ready;
    mc_proto_msg_init(&ready);
    ready.id = MC_PROTO_WORKER_READY;
    mc_proto_msg_set_service(&ready, SERVICE);
    if (mc_proto_msg_set_node_id(&ready, self->args.node_id))
        mc_error("node id too long for the broker protocol", NULL);
    mc_proto_msg_send(&ready, self->broker);
}

//  Sends the reply frame in out to the caller; takes client and rid.
static void
s_reply(mailer_t *self, zframe_t **client, zframe_t **rid, const msgpack_sbuffer *out)
{
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    m.id = MC_PROTO_WORKER_REPLY;
    mc_proto_msg_set_client(&m, zframe_data(*client), zframe_size(*client));
    mc_proto_msg_set_request_id(&m, zframe_data(*rid), zframe_size(*rid));
    zframe_t *envelope = zframe_new(out->data, out->size);
    mc_proto_msg_set_envelope(&m, &envelope);
    mc_proto_msg_send(&m, self->broker);
    zframe_destroy(client);
    zframe_destroy(rid);
}

static void
s_answer(mailer_t *self, zframe_t **client, zframe_t **rid, mc_str_t id, int status, const char *outcome,
         const char *code, const char *detail)
{
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    if (outcome) {
        mc_reply_begin(&pk, id, status, NULL);
        msgpack_pack_map(&pk, 1);
        mc_pack_kv_cstr(&pk, "outcome", outcome);
    }
    else
        mc_reply_error(&pk, id, status, code, detail, NULL);
    s_reply(self, client, rid, &out);
    msgpack_sbuffer_destroy(&out);
}

// --- transfers ----------------------------------------------------------------------------

static size_t
s_read(char *buffer, size_t size, size_t nitems, void *userp)
{
    transfer_t *t = userp;
    size_t n = t->message.size - t->at;
    if (n > size * nitems)
        n = size * nitems;
    memcpy(buffer, t->message.data + t->at, n);
    t->at += n;
    return n;
}

static int
s_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void) easy;
    (void) socketp;
    mailer_t *self = userp;
    size_t i = 0;
    while (i < self->nsocks && self->socks[i].fd != fd)
        i++;
    if (what == CURL_POLL_REMOVE) {
        if (i < self->nsocks)
            self->socks[i] = self->socks[--self->nsocks];
        return 0;
    }
    if (i == self->nsocks) {
        if (self->nsocks == SOCKETS_MAX)
            return -1;      //  libcurl fails that transfer
        self->nsocks++;
    }
    self->socks[i].fd = fd;
    self->socks[i].events = (short) ((what & CURL_POLL_IN ? ZMQ_POLLIN : 0) | (what & CURL_POLL_OUT ? ZMQ_POLLOUT : 0));
    return 0;
}

static int
s_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void) multi;
    mailer_t *self = userp;
    self->timer_at = timeout_ms < 0 ? -1 : (int64_t) (mc_mono_ms() + (uint64_t) timeout_ms);
    return 0;
}

static void
s_transfer_destroy(transfer_t **t_p)
{
    transfer_t *t = *t_p;
    if (t->easy) {
        curl_multi_remove_handle(t->mailer->multi, t->easy);
        curl_easy_cleanup(t->easy);
    }
    if (t->prev)
        t->prev->next = t->next;
    else
    if (t->mailer->transfers == t)
        t->mailer->transfers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    curl_slist_free_all(t->rcpt);
    msgpack_sbuffer_destroy(&t->message);
    zframe_destroy(&t->client);
    zframe_destroy(&t->rid);
    free(t);
    *t_p = NULL;
}

//  Starts the transfer of a mail; false when libcurl would not take it.
static bool
s_start(mailer_t *self, transfer_t *t, mc_str_t to)
{
    char rcpt[300];
    snprintf(rcpt, sizeof rcpt, "<%.*s>", (int) to.len, to.ptr);
    char from[300];
    snprintf(from, sizeof from, "<%s>", self->from);
    CURL *easy = t->easy = curl_easy_init();
    t->rcpt = curl_slist_append(NULL, rcpt);
    if (!easy || !t->rcpt)
        return false;
    bool ok = curl_easy_setopt(easy, CURLOPT_URL, self->url) == CURLE_OK
              //  only mail: a mistyped URL must not make the mailer read files or fetch pages
              && curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "smtp,smtps") == CURLE_OK
              && curl_easy_setopt(easy, CURLOPT_MAIL_FROM, from) == CURLE_OK
              && curl_easy_setopt(easy, CURLOPT_MAIL_RCPT, t->rcpt) == CURLE_OK
              && curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L) == CURLE_OK
              && curl_easy_setopt(easy, CURLOPT_READFUNCTION, s_read) == CURLE_OK
              && curl_easy_setopt(easy, CURLOPT_READDATA, t) == CURLE_OK
              && curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS) == CURLE_OK
              && curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, TRANSFER_TIMEOUT_MS) == CURLE_OK
              && curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) == CURLE_OK
              && curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->error) == CURLE_OK
              && curl_easy_setopt(easy, CURLOPT_PRIVATE, t) == CURLE_OK
              && curl_multi_add_handle(self->multi, easy) == CURLM_OK;
    if (ok) {
        t->next = self->transfers;
        if (t->next)
            t->next->prev = t;
        self->transfers = t;
    }
    return ok;
}

//  Answers every transfer that has ended.
static void
s_finished(mailer_t *self)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(self->multi, &left)))
        if (m->msg == CURLMSG_DONE) {
            CURLcode result = m->data.result;
            char *private = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &private);
            transfer_t *t = (transfer_t *) private;
            long code = 0;
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            mc_str_t id = { t->id, strlen(t->id) };
            if (result == CURLE_OK) {
                self->sent++;
                mc_info("mail sent", "\"notification\":\"%s\"", t->note);
                s_answer(self, &t->client, &t->rid, id, 200, "sent", NULL, NULL);
            }
            else {
                self->failed++;
                char detail[CURL_ERROR_SIZE + 64], esc[CURL_ERROR_SIZE * 2];
                snprintf(detail, sizeof detail, "%s (SMTP %ld)", t->error[0] ? t->error : curl_easy_strerror(result),
                         code);
                mc_warn("mail not sent", "\"notification\":\"%s\",\"error\":\"%s\"", t->note,
                        mc_log_escape(esc, sizeof esc, detail, strlen(detail)));
                s_answer(self, &t->client, &t->rid, id, 502, NULL, "smtp_failed", detail);
            }
            s_transfer_destroy(&t);
        }
}

//  What a mail must look like beyond its schema: nothing in the addresses that could end one
//  and start another, a Message-ID in its brackets.
static bool
s_sane(mc_str_t to, mc_str_t message_id)
{
    for (size_t i = 0; i < to.len; i++)
        if (strchr("<>,;:\"()[]\\", to.ptr[i]))
            return false;
    if (message_id.len < 3 || message_id.ptr[0] != '<' || message_id.ptr[message_id.len - 1] != '>')
        return false;
    for (size_t i = 0; i < message_id.len; i++)
        if ((unsigned char) message_id.ptr[i] <= 0x20 || (unsigned char) message_id.ptr[i] >= 0x7f)
            return false;
    return true;
}

static void
s_request(mailer_t *self, zframe_t **client, zframe_t **rid, zframe_t *frame)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_request_t req;
    int rc = mc_request_decode(&u, zframe_data(frame), zframe_size(frame), &req);
    mc_errors_t errs = { 0 };
    const mc_msgdef_t *def = mc_schema_find("notifications", MC_STR("mail.send"));
    mc_str_t note = { "", 0 }, to = { "", 0 }, subject = { "", 0 }, message_id = { "", 0 }, text = { "", 0 };
    if (rc) {
        self->refused++;
        if (rc == MC_ESHAPE && req.id.len)
            s_answer(self, client, rid, req.id, 400, NULL, "bad_envelope", "the message envelope is malformed");
    }
    else
    if (!mc_str_eq(req.type, "mail.send") || !def)
        s_answer(self, client, rid, req.id, 400, NULL, "unknown_message", "the mailer has no such message");
    else
    if (!mc_str_eq(req.role, "system"))
        s_answer(self, client, rid, req.id, 403, NULL, "forbidden", "for the notifications service only");
    else
    if (mc_schema_validate(def, req.body, &errs) || mc_map_str(req.body, "to", &to)
    ||  mc_map_str(req.body, "message_id", &message_id) || !s_sane(to, message_id)) {
        self->refused++;
        s_answer(self, client, rid, req.id, 422, NULL, "unsendable", "the mail has an invalid address or Message-ID");
    }
    else {
        //  no deadline check: a mail is still wanted late, and the actor takes a late "sent"
        mc_map_str(req.body, "id", &note);
        mc_map_str(req.body, "subject", &subject);
        mc_map_str(req.body, "text", &text);
        char nesc[MC_REQUEST_ID_MAX * 2], tesc[600], sesc[700];
        mc_log_escape(nesc, sizeof nesc, note.ptr, note.len);
        if (!self->url) {
            self->logged++;
            mc_info("mail logged, not sent: MERCATO_SMTP_URL is unset", "\"notification\":\"%s\",\"to\":\"%s\","
                    "\"subject\":\"%s\"", nesc, mc_log_escape(tesc, sizeof tesc, to.ptr, to.len),
                    mc_log_escape(sesc, sizeof sesc, subject.ptr, subject.len));
            s_answer(self, client, rid, req.id, 200, "logged", NULL, NULL);
        }
        else {
            transfer_t *t = calloc(1, sizeof *t);
            if (!t)
                abort();
            t->mailer = self;
            snprintf(t->id, sizeof t->id, "%.*s", (int) req.id.len, req.id.ptr);
            snprintf(t->note, sizeof t->note, "%.*s", MC_REQUEST_ID_MAX, nesc);
            msgpack_sbuffer_init(&t->message);
            mailer_message(&t->message, self->from, to, subject, message_id, text, mc_now_ms());
            if (s_start(self, t, to)) {
                t->client = *client;
                t->rid = *rid;
                *client = *rid = NULL;
            }
            else {
                self->failed++;
                s_answer(self, client, rid, req.id, 502, NULL, "smtp_failed", "the mail transfer could not start");
                s_transfer_destroy(&t);
            }
        }
    }
    msgpack_unpacked_destroy(&u);
}

//  Handles what came from the front (rc: what mc_proto_msg_recv said); returns false when the
//  mailer must reconnect.
static bool
s_broker(mailer_t *self, mc_proto_msg_t *m, int rc)
{
    if (m->id == MC_PROTO_WORKER_REQUEST) {
        //  mails are asked for by the notifications actor, which runs on a node; nobody else
        bool node = rc == 0 && m->peer_role == MC_PEER_NODE;
        if (node) {
            zframe_t *client = zframe_new(m->client, m->client_size);
            zframe_t *rid = zframe_new(m->request_id, m->request_id_size);
            s_request(self, &client, &rid, m->envelope);
            zframe_destroy(&client);
            zframe_destroy(&rid);
        }
        else
            mc_warn("mail request refused", "\"peer\":\"%s\"", rc ? "malformed" : "not a node");
    }
    return !(rc == 0 && m->id == MC_PROTO_WORKER_DISCONNECT);
}

// --- the loop -----------------------------------------------------------------------------

//  Waits for the pipe, the front, libcurl's sockets or the next timer; false on $TERM.
static bool
s_wait(mailer_t *self, zsock_t *pipe)
{
    zmq_pollitem_t items[2 + SOCKETS_MAX] = {
        { .socket = zsock_resolve(pipe), .events = ZMQ_POLLIN },
        { .socket = zsock_resolve(self->broker), .events = ZMQ_POLLIN },
    };
    size_t n = 2;
    for (size_t i = 0; i < self->nsocks; i++)
        items[n++] = (zmq_pollitem_t) { .fd = self->socks[i].fd, .events = self->socks[i].events };
    uint64_t now = mc_mono_ms();
    int64_t until = (int64_t) now + 1000;
    if (self->timer_at >= 0 && self->timer_at < until)
        until = self->timer_at;
    long timeout = until > (int64_t) now ? (long) (until - (int64_t) now) : 0;
    if (zmq_poll(items, (int) n, timeout) < 0)
        return errno == EINTR;
    if (items[0].revents & ZMQ_POLLIN) {
        char *cmd = zstr_recv(pipe);
        bool term = !cmd || streq(cmd, "$TERM");
        free(cmd);
        if (term)
            return false;
    }
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    for (int rc; (rc = mc_proto_msg_recv(&m, self->broker, NULL, NULL)) != MC_PROTO_AGAIN; ) {
        bool ok = s_broker(self, &m, rc);
        mc_proto_msg_reset(&m);
        if (!ok) {
            s_connect(self);
            break;
        }
    }
    int running;
    for (size_t i = 2; i < n; i++)
        if (items[i].revents)
            curl_multi_socket_action(self->multi, items[i].fd,
                                     (items[i].revents & ZMQ_POLLIN ? CURL_CSELECT_IN : 0)
                                     | (items[i].revents & ZMQ_POLLOUT ? CURL_CSELECT_OUT : 0)
                                     | (items[i].revents & ZMQ_POLLERR ? CURL_CSELECT_ERR : 0), &running);
    if (self->timer_at >= 0 && (int64_t) mc_mono_ms() >= self->timer_at) {
        self->timer_at = -1;
        curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    s_finished(self);
    return true;
}

void
mailer_actor(zsock_t *pipe, void *args)
{
    mailer_t self = { .args = *(mailer_args_t *) args, .timer_at = -1 };
    prctl(PR_SET_NAME, SERVICE, 0, 0, 0);
    self.url = mc_config_env("MERCATO_SMTP_URL", NULL);
    const char *from = mc_config_env("MERCATO_SMTP_FROM", "noreply@mercato.local");
    bool from_ok = strlen(from) < sizeof self.from && strchr(from, '@') && !strpbrk(from, "<>\r\n ,;\"");
    if (!from_ok)
        mc_error("MERCATO_SMTP_FROM is not an address; using noreply@mercato.local", NULL);
    snprintf(self.from, sizeof self.from, "%s", from_ok ? from : "noreply@mercato.local");
    self.multi = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? curl_multi_init() : NULL;
    zsock_signal(pipe, 0);
    if (!self.multi) {
        mc_error("mailer cannot start: libcurl failed to initialise", NULL);
        return;
    }
    curl_multi_setopt(self.multi, CURLMOPT_SOCKETFUNCTION, s_socket);
    curl_multi_setopt(self.multi, CURLMOPT_SOCKETDATA, &self);
    curl_multi_setopt(self.multi, CURLMOPT_TIMERFUNCTION, s_timer);
    curl_multi_setopt(self.multi, CURLMOPT_TIMERDATA, &self);
    curl_multi_setopt(self.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, CONNECTIONS_MAX);
    s_connect(&self);
    mc_info("mailer started", "\"node\":\"%s\",\"smtp\":%s", self.args.node_id, self.url ? "true" : "false");
    while (s_wait(&self, pipe))
        ;
    s_send(&self, MC_PROTO_WORKER_DISCONNECT);
    //  mails still in flight get no answer: their caller counts the attempt as failed and sends
    //  again, with the same Message-ID
    while (self.transfers) {
        transfer_t *t = self.transfers;
        s_transfer_destroy(&t);
    }
    mc_info("mailer stopped", "\"sent\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"logged\":%" PRIu64 ",\"refused\":%" PRIu64,
            self.sent, self.failed, self.logged, self.refused);
    curl_multi_cleanup(self.multi);
    zsock_destroy(&self.broker);
}
