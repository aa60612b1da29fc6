/*
 * test_runtime.c — the unit tests of libcnnrt, linked with the runtime
 * alone and a hand-written model (rt_fake_model.c), so they run without
 * the compiler.  One suite per area, each in its own tests/rt_test_*.c.
 *
 *   ./build/tests/test_runtime            all suites
 *   CK_RUN_SUITE=checkpoint ./...         one suite (check's variables)
 *   CK_FORK=no gdb ./...                  without forking, for a debugger
 *
 * Run from the repository root: one test builds tests/rt_fake_model.c into
 * a shared object (it skips itself elsewhere).
 */
#include <check.h>
#include <stdlib.h>

#include "rt_suites.h"
#include "rt_util.h"

int main(void)
{
    rt_base_create();
    SRunner *sr = srunner_create(rt_core_suite());
    srunner_add_suite(sr, rt_optim_suite());
    srunner_add_suite(sr, rt_data_suite());
    srunner_add_suite(sr, rt_augment_suite());
    srunner_add_suite(sr, rt_loader_suite());
    srunner_add_suite(sr, rt_checkpoint_suite());
    srunner_add_suite(sr, rt_train_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    rt_base_remove();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
