#include "mc_log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *s_component = "mercato";
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;

void
mc_log_init(const char *component)
{
    s_component = component;
    setvbuf(stdout, NULL, _IOLBF, 0);
}

char *
mc_log_escape(char *out, size_t outsz, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 7 < outsz; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char) c;
        }
        else
        if (c < 0x20 || c == 0x7f)
            o += (size_t) snprintf(out + o, outsz - o, "\\u%04x", c);
        else
            out[o++] = (char) c;
    }
    out[o] = 0;
    return out;
}

void
mc_log(mc_log_level_t level, const char *msg, const char *fields, ...)
{
    static const char *names[] = { "debug", "info", "warn", "error" };
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char extra[2048] = "";
    if (fields) {
        va_list ap;
        va_start(ap, fields);
        extra[0] = ',';
        vsnprintf(extra + 1, sizeof extra - 1, fields, ap);
        va_end(ap);
    }
    pthread_mutex_lock(&s_lock);
    printf("{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"component\":\"%s\",\"msg\":\"%s\"%s}\n",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           ts.tv_nsec / 1000000, names[level], s_component, msg, extra);
    pthread_mutex_unlock(&s_lock);
}
