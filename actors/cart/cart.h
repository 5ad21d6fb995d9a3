/*  cart: each signed-in user's cart; see cart.c for its state and flows. */
#ifndef CART_H
#define CART_H

#include "mc_actor.h"

extern const mc_service_t cart_service;

#endif
