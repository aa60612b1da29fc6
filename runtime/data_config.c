/*
 * data_config.c — the data part of the train config (placeholder: only the
 * defaults; the parser arrives with normalization and augmentation).
 */
#include "rt_internal.h"

int cnn_data_config_parse(const json_t *root, cnn_data_config *cfg, cnn_error *err)
{
    (void)root, (void)cfg, (void)err;
    return 0;
}
