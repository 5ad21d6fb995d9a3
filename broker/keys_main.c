/*  mercato-keys: makes the keys of a cluster's internal plane (mc_plane.h, CONTRACT §9).

    usage: mercato-keys DIR                  the broker's certificate and a key per role (edge,
                                             node, relay, ops), each on the allow-list, and the
                                             relay's event signing key pair (events.key,
                                             events.pub: mc_event_sign.h); existing keys are
                                             kept, so running it again is harmless
           mercato-keys DIR add ROLE NAME    one more key (a node on another host, say)
    Secret files are mode 0600 in a 0700 folder. Exit 0 on success, 1 when a file cannot be
    written, 2 on bad usage or a name that is taken. */
#include "mc_event_sign.h"
#include "mc_log.h"
#include "mc_plane.h"

#include <errno.h>

int
main(int argc, char **argv)
{
    mc_log_init("keys");
    zsys_init();
    zsys_set_logstream(stderr);
    if (argc == 2) {
        if (mc_plane_keygen(argv[1]))
            return 1;
        if (mc_event_sign_keygen(argv[1])) {
            fprintf(stderr, "mercato-keys: cannot write the event keys in %s: %s\n", argv[1], strerror(errno));
            return 1;
        }
        return 0;
    }
    if (argc == 5 && streq(argv[2], "add")) {
        if (mc_plane_add(argv[1], argv[3], argv[4]) == 0)
            return 0;
        fprintf(stderr, "mercato-keys: %s\n", errno == EINVAL ? "ROLE is one of edge, node, relay, ops; NAME is 1-63 of [A-Za-z0-9._-]"
                                             : errno == EEXIST ? "a key with that name exists" : strerror(errno));
        return errno == EINVAL || errno == EEXIST ? 2 : 1;
    }
    fprintf(stderr, "usage: mercato-keys DIR | mercato-keys DIR add ROLE NAME\n");
    return 2;
}
