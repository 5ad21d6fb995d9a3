/*  edge_hash: argon2id off the HTTP threads, in a small pool with a bounded queue.

    Each hash costs ~25 ms of CPU and 19 MiB; the pool runs at most `threads` at once and queues
    at most `queue` more, so a burst of logins cannot exhaust memory. A full queue is an
    immediate refusal (the caller answers 503 with Retry-After), not a wait. */
#ifndef EDGE_HASH_H
#define EDGE_HASH_H

#include <stdbool.h>
#include <stddef.h>

void edge_hash_init(int threads, int queue);

//  Hashes a password into out (MC_PASSWORD_HASH_MAX). 0, or -1 when the pool is full or failed.
int edge_hash_password(const char *password, size_t len, char *out);

//  Verifies password against encoded (NULL: against a dummy, so unknown users cost the same).
//  0 with *ok set, or -1 when the pool is full.
int edge_hash_verify(const char *encoded, const char *password, size_t len, bool *ok);

#endif
