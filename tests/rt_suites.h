/*
 * rt_suites.h — the suites of test_runtime, one file each.
 */
#ifndef RT_SUITES_H
#define RT_SUITES_H

#include <check.h>

Suite *rt_core_suite(void);       /* rt_test_core.c: log, rng, init, model, ctx, config, sgd */
Suite *rt_optim_suite(void);      /* rt_test_optim.c: adam, rmsprop, clipping, schedules */
Suite *rt_data_suite(void);       /* rt_test_data.c: IDX, datasets, batches */
Suite *rt_augment_suite(void);    /* rt_test_augment.c: augmentation, data config */
Suite *rt_loader_suite(void);     /* rt_test_loader.c: CIFAR-10, formats, stats, split, loader */
Suite *rt_checkpoint_suite(void); /* rt_test_checkpoint.c: safetensors */
Suite *rt_train_suite(void);      /* rt_test_train.c: evaluate, cnn_train_main, model .so */

#endif
