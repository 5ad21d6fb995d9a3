/*  mc_log: one JSON object per line on stdout.

    Every process logs through here so that operators can pipe the output of all of them into
    one tool. Messages must never contain secrets; callers pass only ids and codes. */
#ifndef MC_LOG_H
#define MC_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum { MC_LOG_DEBUG, MC_LOG_INFO, MC_LOG_WARN, MC_LOG_ERROR } mc_log_level_t;

//  Names the process in every line ("broker", "node", "edge").
void mc_log_init(const char *component);

//  Writes {"ts":..,"level":..,"component":..,"msg":..,<fields>} where fields is a
//  printf-formatted fragment of extra JSON members, e.g. "\"request_id\":\"%s\"" (may be NULL).
//  Values that come from outside must be escaped by the caller with mc_log_escape.
void mc_log(mc_log_level_t level, const char *msg, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

//  Escapes len bytes of s for a JSON string into out (size outsz), truncating; returns out.
char *mc_log_escape(char *out, size_t outsz, const char *s, size_t len);

#define mc_info(msg, ...)  mc_log(MC_LOG_INFO, msg, __VA_ARGS__)
#define mc_warn(msg, ...)  mc_log(MC_LOG_WARN, msg, __VA_ARGS__)
#define mc_error(msg, ...) mc_log(MC_LOG_ERROR, msg, __VA_ARGS__)

#endif
