/*  mc_event_sign: key files, signing, and every way a record can fail to verify. */
#include "mc_event_sign.h"
#include "mc_test.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

static char s_root[64];

//  A fresh folder under the test's root.
static const char *
s_dir(const char *name)
{
    static char path[8][128];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 128, "%s/%s", s_root, name);
    return p;
}

static void
s_write(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static long
s_read(const char *dir, const char *name, char *out, size_t outsz)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(out, 1, outsz - 1, f);
    out[n] = 0;
    fclose(f);
    return (long) n;
}

static mode_t
s_mode(const char *dir, const char *name)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) ? (mode_t) -1 : st.st_mode & 0777;
}

#define STR(s) ((mc_str_t) { s, sizeof s - 1 })

//  A record as the relay produces one.
static mc_event_record_t
s_record(void)
{
    mc_event_record_t rec = { .topic = STR("order.events"), .key = STR("01ORDER"),
                              .value = STR("{\"id\":\"01ORDER\"}") };
    rec.headers[MC_EVENT_H_SPECVERSION] = STR("1.0");
    rec.headers[MC_EVENT_H_ID] = STR("01CAUSE-0");
    rec.headers[MC_EVENT_H_TYPE] = STR("order.cancelled");
    rec.headers[MC_EVENT_H_SOURCE] = STR("/mercato/orders");
    rec.headers[MC_EVENT_H_TIME] = STR("2026-12-04T19:00:00.000Z");
    rec.headers[MC_EVENT_H_CONTENT_TYPE] = STR("application/json");
    return rec;
}

static mc_event_check_t
s_check(mc_event_verifier_t *v, const mc_event_record_t *rec, const char *kid, const char *sig)
{
    return mc_event_verifier_check(v, rec, (mc_str_t) { kid, kid ? strlen(kid) : 0 },
                                   (mc_str_t) { sig, sig ? strlen(sig) : 0 });
}

static void
test_keygen_writes_a_pair_once(void)
{
    const char *dir = s_dir("gen/plane");
    ASSERT_EQ(mc_event_sign_keygen(dir), 0);
    ASSERT_EQ(s_mode(dir, MC_EVENT_KEY_FILE), 0600);
    ASSERT_EQ(s_mode(dir, MC_EVENT_PUB_FILE), 0644);
    ASSERT_EQ(s_mode(s_root, "gen"), 0700);
    char key[512], again[512], pub[512];
    MC_CHECK(s_read(dir, MC_EVENT_KEY_FILE, key, sizeof key) > 0);
    MC_CHECK(strstr(key, "-----BEGIN PRIVATE KEY-----") == key);
    MC_CHECK(s_read(dir, MC_EVENT_PUB_FILE, pub, sizeof pub) > 0);
    MC_CHECK(strstr(pub, "-----BEGIN PUBLIC KEY-----") == pub);

    //  a second run changes nothing; without its public half, the same key gets it back
    ASSERT_EQ(mc_event_sign_keygen(dir), 0);
    s_read(dir, MC_EVENT_KEY_FILE, again, sizeof again);
    ASSERT_STR(again, key);
    char err[256];
    mc_event_signer_t *signer = mc_event_signer_new(dir, err, sizeof err);
    MC_CHECK(signer);
    if (!signer)
        return;
    ASSERT_EQ(strlen(mc_event_signer_kid(signer)), MC_EVENT_KID_LEN);
    char path[256];
    snprintf(path, sizeof path, "%s/" MC_EVENT_PUB_FILE, dir);
    ASSERT_EQ(unlink(path), 0);
    ASSERT_EQ(mc_event_sign_keygen(dir), 0);
    s_read(dir, MC_EVENT_PUB_FILE, again, sizeof again);
    ASSERT_STR(again, pub);

    //  a node's folder (public key only) gets no private key
    const char *node = s_dir("gen/node");
    ASSERT_EQ(mkdir(node, 0700), 0);
    s_write(node, MC_EVENT_PUB_FILE, pub, 0644);
    ASSERT_EQ(mc_event_sign_keygen(node), 0);
    ASSERT_EQ(s_mode(node, MC_EVENT_KEY_FILE), (mode_t) -1);
    mc_event_signer_destroy(&signer);
    MC_CHECK(!signer);
}

static void
test_a_signed_record_verifies_and_every_change_breaks_it(void)
{
    const char *dir = s_dir("good");
    ASSERT_EQ(mc_event_sign_keygen(dir), 0);
    char err[256], sig[MC_EVENT_SIG_LEN + 1];
    mc_event_signer_t *signer = mc_event_signer_new(dir, err, sizeof err);
    mc_event_verifier_t *v = mc_event_verifier_new(dir, err, sizeof err);
    MC_CHECK(signer && v);
    if (!signer || !v)
        return;
    ASSERT_EQ(mc_event_verifier_size(v), 1);
    const char *kid = mc_event_signer_kid(signer);
    mc_event_record_t rec = s_record();
    ASSERT_EQ(mc_event_signer_sign(signer, &rec, sig), 0);
    ASSERT_EQ(strlen(sig), MC_EVENT_SIG_LEN);
    ASSERT_EQ(s_check(v, &rec, kid, sig), MC_EVENT_VALID);

    mc_event_record_t t = rec;
    t.value = STR("{\"id\":\"01OTHER\"}");
    ASSERT_EQ(s_check(v, &t, kid, sig), MC_EVENT_BAD_SIGNATURE);
    t = rec;
    t.key = STR("01OTHER");
    ASSERT_EQ(s_check(v, &t, kid, sig), MC_EVENT_BAD_SIGNATURE);
    t = rec;
    t.topic = STR("payment.events");
    ASSERT_EQ(s_check(v, &t, kid, sig), MC_EVENT_BAD_SIGNATURE);
    for (int h = 0; h < MC_EVENT_H_COUNT; h++) {
        t = rec;
        t.headers[h] = STR("x");
        if (s_check(v, &t, kid, sig) != MC_EVENT_BAD_SIGNATURE) {
            fprintf(stderr, "a changed %s still verifies\n", mc_event_signed_headers[h]);
            mc_test_failures++;
        }
    }
    //  a byte moved from one field to the next: the lengths keep fields apart
    t = rec;
    t.topic = STR("order.events0");
    t.key = STR("1ORDER");
    ASSERT_EQ(s_check(v, &t, kid, sig), MC_EVENT_BAD_SIGNATURE);
    //  absent and empty are one thing (CONTRACT: the relay writes no empty header)
    t = rec;
    t.headers[MC_EVENT_H_TRACEPARENT] = STR("");
    ASSERT_EQ(s_check(v, &t, kid, sig), MC_EVENT_VALID);

    //  a changed, cut or garbled signature; no signature at all
    char bad[MC_EVENT_SIG_LEN + 2];
    snprintf(bad, sizeof bad, "%s", sig);
    bad[10] = bad[10] == 'A' ? 'B' : 'A';
    ASSERT_EQ(s_check(v, &rec, kid, bad), MC_EVENT_BAD_SIGNATURE);
    bad[MC_EVENT_SIG_LEN - 1] = 0;
    ASSERT_EQ(s_check(v, &rec, kid, bad), MC_EVENT_BAD_SIGNATURE);
    snprintf(bad, sizeof bad, "%s", sig);
    bad[3] = '*';
    ASSERT_EQ(s_check(v, &rec, kid, bad), MC_EVENT_BAD_SIGNATURE);
    snprintf(bad, sizeof bad, "%sA", sig);
    ASSERT_EQ(s_check(v, &rec, kid, bad), MC_EVENT_BAD_SIGNATURE);
    ASSERT_EQ(s_check(v, &rec, kid, NULL), MC_EVENT_UNSIGNED);
    ASSERT_EQ(s_check(v, &rec, NULL, sig), MC_EVENT_UNSIGNED);
    ASSERT_EQ(s_check(v, &rec, "", ""), MC_EVENT_UNSIGNED);
    ASSERT_EQ(s_check(v, &rec, "0123456789abcdef", sig), MC_EVENT_UNKNOWN_KEY);
    ASSERT_STR(mc_event_check_str(MC_EVENT_UNKNOWN_KEY), "unknown_key");
    mc_event_signer_destroy(&signer);
    mc_event_verifier_destroy(&v);
    MC_CHECK(!v);
}

static void
test_another_key_is_refused_until_it_is_installed(void)
{
    const char *mine = s_dir("mine"), *theirs = s_dir("theirs");
    ASSERT_EQ(mc_event_sign_keygen(mine), 0);
    ASSERT_EQ(mc_event_sign_keygen(theirs), 0);
    char err[256], sig[MC_EVENT_SIG_LEN + 1], mine_kid[MC_EVENT_KID_LEN + 1];
    mc_event_signer_t *own = mc_event_signer_new(mine, err, sizeof err);
    mc_event_signer_t *other = mc_event_signer_new(theirs, err, sizeof err);
    mc_event_verifier_t *v = mc_event_verifier_new(mine, err, sizeof err);
    MC_CHECK(own && other && v);
    if (!own || !other || !v)
        return;
    snprintf(mine_kid, sizeof mine_kid, "%s", mc_event_signer_kid(own));
    MC_CHECK(strcmp(mine_kid, mc_event_signer_kid(other)) != 0);
    mc_event_record_t rec = s_record();
    ASSERT_EQ(mc_event_signer_sign(other, &rec, sig), 0);
    ASSERT_EQ(s_check(v, &rec, mc_event_signer_kid(other), sig), MC_EVENT_UNKNOWN_KEY);
    //  the forger names our key: the signature is not ours
    ASSERT_EQ(s_check(v, &rec, mine_kid, sig), MC_EVENT_BAD_SIGNATURE);
    mc_event_verifier_destroy(&v);

    //  rotation: the next key's public half beside ours, under another name; both verify
    char pub[512];
    s_read(theirs, MC_EVENT_PUB_FILE, pub, sizeof pub);
    s_write(mine, "events.next.pub", pub, 0644);
    v = mc_event_verifier_new(mine, err, sizeof err);
    MC_CHECK(v);
    if (!v)
        return;
    ASSERT_EQ(mc_event_verifier_size(v), 2);
    ASSERT_EQ(s_check(v, &rec, mc_event_signer_kid(other), sig), MC_EVENT_VALID);
    ASSERT_EQ(mc_event_signer_sign(own, &rec, sig), 0);
    ASSERT_EQ(s_check(v, &rec, mine_kid, sig), MC_EVENT_VALID);
    mc_event_signer_destroy(&own);
    mc_event_signer_destroy(&other);
    mc_event_verifier_destroy(&v);
}

//  The signing input is the documented one: a signature made by another implementation
//  (Python's cryptography, tests/e2e/event_sign.py) from a fixed key verifies here, and this
//  one makes the same bytes (Ed25519 is deterministic).
static void
test_known_signature(void)
{
    const char *dir = s_dir("known");
    ASSERT_EQ(mkdir(dir, 0700), 0);
    s_write(dir, MC_EVENT_KEY_FILE, "-----BEGIN PRIVATE KEY-----\n"
            "MC4CAQAwBQYDK2VwBCIEIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f\n"
            "-----END PRIVATE KEY-----\n", 0600);
    ASSERT_EQ(mc_event_sign_keygen(dir), 0);
    char err[256], sig[MC_EVENT_SIG_LEN + 1];
    mc_event_signer_t *signer = mc_event_signer_new(dir, err, sizeof err);
    mc_event_verifier_t *v = mc_event_verifier_new(dir, err, sizeof err);
    MC_CHECK(signer && v);
    if (!signer || !v)
        return;
    ASSERT_STR(mc_event_signer_kid(signer), "56475aa75463474c");
    mc_event_record_t rec = s_record();
    const char *python = "tgLG8jpTCcSuyYuft1Xfk7sVhlsRkhnmLZ5WjEPrtReM8hSlI0O_XUUToEXKENJtUMEQTbIapxZYdjB29tH_AA";
    ASSERT_EQ(s_check(v, &rec, "56475aa75463474c", python), MC_EVENT_VALID);
    ASSERT_EQ(mc_event_signer_sign(signer, &rec, sig), 0);
    ASSERT_STR(sig, python);
    mc_event_signer_destroy(&signer);
    mc_event_verifier_destroy(&v);
}

static void
test_missing_or_unfit_keys_are_refused(void)
{
    char err[256] = "";
    const char *empty = s_dir("empty");
    ASSERT_EQ(mkdir(empty, 0700), 0);
    MC_CHECK(!mc_event_signer_new(empty, err, sizeof err));
    MC_CHECK(strstr(err, MC_EVENT_KEY_FILE));
    MC_CHECK(!mc_event_verifier_new(empty, err, sizeof err));
    MC_CHECK(strstr(err, "no " MC_EVENT_PUB_FILE));
    MC_CHECK(!mc_event_verifier_new(s_dir("nowhere"), err, sizeof err));
    MC_CHECK(strstr(err, "cannot open the key folder"));

    const char *dir = s_dir("loose");
    ASSERT_EQ(mc_event_sign_keygen(dir), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/" MC_EVENT_KEY_FILE, dir);
    chmod(path, 0640);
    MC_CHECK(!mc_event_signer_new(dir, err, sizeof err));
    MC_CHECK(strstr(err, "chmod 600"));
    chmod(path, 0600);
    mc_event_signer_t *signer = mc_event_signer_new(dir, err, sizeof err);
    MC_CHECK(signer);
    mc_event_signer_destroy(&signer);

    s_write(dir, "events.bad.pub", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", 0644);
    MC_CHECK(!mc_event_verifier_new(dir, err, sizeof err));
    MC_CHECK(strstr(err, "is not an Ed25519 public key"));
    s_write(dir, MC_EVENT_KEY_FILE, "not a key\n", 0600);
    MC_CHECK(!mc_event_signer_new(dir, err, sizeof err));
    MC_CHECK(strstr(err, "is not an Ed25519 private key"));

    errno = 0;
    ASSERT_EQ(mc_event_sign_keygen("/proc/mercato-cannot-be-here"), -1);
    MC_CHECK(errno != 0);
}

int
main(void)
{
    snprintf(s_root, sizeof s_root, "/tmp/mc-event-sign-XXXXXX");
    if (!mkdtemp(s_root))
        return 1;
    MC_TEST_RUN(test_keygen_writes_a_pair_once);
    MC_TEST_RUN(test_a_signed_record_verifies_and_every_change_breaks_it);
    MC_TEST_RUN(test_another_key_is_refused_until_it_is_installed);
    MC_TEST_RUN(test_known_signature);
    MC_TEST_RUN(test_missing_or_unfit_keys_are_refused);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_root);
    if (system(cmd) != 0)
        return 1;
    return MC_TEST_DONE();
}
