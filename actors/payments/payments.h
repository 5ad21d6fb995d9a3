/*  payments: the simulated payment gateway (CONTRACT §7). */
#ifndef PAYMENTS_H
#define PAYMENTS_H

#include "mc_actor.h"

extern const mc_service_t payments_service;

#endif
