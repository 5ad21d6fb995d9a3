/*  mc_test: assertions that print both operands (after libuv's test/task.h). For test files only. */
#ifndef MC_TEST_H
#define MC_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int mc_test_failures;

#define MC_CHECK(cond) do { \
    if (!(cond)) { \
        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        mc_test_failures++; \
    } } while (0)

#define ASSERT_EQ(a, b) do { \
    long long _a = (long long) (a), _b = (long long) (b); \
    if (_a != _b) { \
        fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, _a, _b); \
        mc_test_failures++; \
    } } while (0)

#define ASSERT_STR(a, b) do { \
    const char *_a = (a), *_b = (b); \
    if (!_a || !_b || strcmp(_a, _b) != 0) { \
        fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a, #b, \
                _a ? _a : "(null)", _b ? _b : "(null)"); \
        mc_test_failures++; \
    } } while (0)

#define MC_TEST_RUN(fn) do { \
    int _before = mc_test_failures; \
    fn(); \
    printf("%s %s\n", mc_test_failures == _before ? "ok  " : "FAIL", #fn); \
    } while (0)

#define MC_TEST_DONE() (printf("%s\n", mc_test_failures ? "FAILED" : "all passed"), mc_test_failures ? 1 : 0)

#endif
