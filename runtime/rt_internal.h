/*
 * rt_internal.h — what runtime files share and the public API does not
 * show (parsing helpers over jansson values).  Not installed.
 */
#ifndef CNNRT_INTERNAL_H
#define CNNRT_INTERNAL_H

#include <jansson.h>

#include "cnnrt.h"

/* The data part of a train config (normalize, mean, std, validation,
 * augment) from the root object into cfg; missing keys keep cfg's values
 * (the defaults).  Returns 0 or -1 with a message. */
int cnn_data_config_parse(const json_t *root, cnn_data_config *cfg, cnn_error *err);

#endif
