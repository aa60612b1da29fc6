/* nets.h — the test networks of nets.c. */
#ifndef CNNC_TEST_NETS_H
#define CNNC_TEST_NETS_H

typedef struct net_case {
    const char *name;
    const char *text; /* a whole .cnn file */
} net_case;

extern const net_case test_nets[];
extern const int test_net_count;

#endif
