#include "edge_hash.h"

#include "mc_password.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
    bool verify;                //  verify, or hash
    const char *encoded;        //  verify: the stored hash
    const char *password;       //  the plaintext (the caller's memory)
    size_t len;                 //  its length
    char *out;                  //  hash: where the result goes
    int rc;                     //  hash: 0 or -1
    bool ok;                    //  verify: the answer
    bool done;                  //  set by the worker
    struct job *next;           //  queue link
} job_t;

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_work = PTHREAD_COND_INITIALIZER;   //  a job is queued
static pthread_cond_t s_done = PTHREAD_COND_INITIALIZER;   //  a job finished
static job_t *s_head, *s_tail;
static int s_pending;           //  queued or running
static int s_limit;             //  most pending jobs allowed
static char s_dummy[MC_PASSWORD_HASH_MAX];

static void *
s_worker(void *arg)
{
    pthread_mutex_lock(&s_lock);
    while (true) {
        while (!s_head)
            pthread_cond_wait(&s_work, &s_lock);
        job_t *job = s_head;
        s_head = job->next;
        if (!s_head)
            s_tail = NULL;
        pthread_mutex_unlock(&s_lock);
        if (job->verify)
            job->ok = mc_password_verify(job->encoded ? job->encoded : s_dummy, job->password, job->len)
                   && job->encoded;
        else
            job->rc = mc_password_hash(job->password, job->len, job->out);
        pthread_mutex_lock(&s_lock);
        job->done = true;
        s_pending--;
        pthread_cond_broadcast(&s_done);
    }
    return NULL;
}

void
edge_hash_init(int threads, int queue)
{
    s_limit = threads + queue;
    //  unknown emails are checked against this, so they take as long as known ones
    mc_password_hash("not a password anyone has", 25, s_dummy);
    for (int i = 0; i < threads; i++) {
        pthread_t t;
        pthread_create(&t, NULL, s_worker, NULL);
        pthread_detach(t);
    }
}

static int
s_run(job_t *job)
{
    pthread_mutex_lock(&s_lock);
    if (s_pending >= s_limit) {
        pthread_mutex_unlock(&s_lock);
        return -1;
    }
    s_pending++;
    if (s_tail)
        s_tail->next = job;
    else
        s_head = job;
    s_tail = job;
    pthread_cond_signal(&s_work);
    while (!job->done)
        pthread_cond_wait(&s_done, &s_lock);
    pthread_mutex_unlock(&s_lock);
    return 0;
}

int
edge_hash_password(const char *password, size_t len, char *out)
{
    job_t job = { .password = password, .len = len, .out = out };
    if (s_run(&job))
        return -1;
    return job.rc;
}

int
edge_hash_verify(const char *encoded, const char *password, size_t len, bool *ok)
{
    job_t job = { .verify = true, .encoded = encoded, .password = password, .len = len };
    if (s_run(&job))
        return -1;
    *ok = job.ok;
    return 0;
}
