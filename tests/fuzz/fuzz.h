/*  fuzz: what every libFuzzer target here shares. A broken property aborts, which libFuzzer
    reports as a crash and saves the input. For tests/fuzz only. */
#ifndef MC_FUZZ_H
#define MC_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond) do { \
    if (!(cond)) { \
        fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond); \
        abort(); \
    } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
