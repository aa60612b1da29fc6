/*
 * schedule.c — learning-rate schedules: the rate of each train step.
 *
 * A schedule is a row of `schedules`: a function from the epoch to the
 * rate, in the closed form torch.optim.lr_scheduler gives it
 * (_get_closed_form_lr), as if the scheduler were stepped once per epoch.
 * The closed form depends on the epoch alone, so a resumed run gets the
 * same rates without replaying the schedule.  A linear warm-up measured
 * in steps multiplies the result (cnnrt.h has the formulas).  All of it is
 * in double; the optimizer rounds the rate where torch would.
 */
#include "cnnrt.h"

#include <math.h>

/* The rate of `epoch` before warm-up. */
typedef double (*schedule_fn)(const cnn_schedule_config *s, double base_lr, int64_t epoch,
                              int total_epochs);

static double constant_lr(const cnn_schedule_config *s, double base_lr, int64_t epoch,
                          int total_epochs)
{
    (void)s, (void)epoch, (void)total_epochs;
    return base_lr;
}

/* StepLR: base_lr * gamma ** (epoch // step_size). */
static double step_lr(const cnn_schedule_config *s, double base_lr, int64_t epoch,
                      int total_epochs)
{
    (void)total_epochs;
    if (s->step_size <= 0)
        return base_lr;
    return base_lr * pow(s->gamma, (double)(epoch / s->step_size));
}

/* MultiStepLR: base_lr * gamma ** bisect_right(milestones, epoch). */
static double multistep_lr(const cnn_schedule_config *s, double base_lr, int64_t epoch,
                           int total_epochs)
{
    (void)total_epochs;
    int passed = 0;
    for (int i = 0; i < s->n_milestones && i < CNN_MAX_MILESTONES; i++)
        passed += s->milestones[i] <= epoch;
    return base_lr * pow(s->gamma, passed);
}

/* ExponentialLR: base_lr * gamma ** epoch. */
static double exponential_lr(const cnn_schedule_config *s, double base_lr, int64_t epoch,
                             int total_epochs)
{
    (void)total_epochs;
    return base_lr * pow(s->gamma, (double)epoch);
}

/* CosineAnnealingLR:
 *   eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2,
 * t_max = 0 meaning the run's epochs.  Past t_max the cosine goes on
 * (rising again), as torch's closed form does; with no t_max at all
 * (0 epochs) the rate stays base_lr. */
static double cosine_lr(const cnn_schedule_config *s, double base_lr, int64_t epoch,
                        int total_epochs)
{
    int t_max = s->t_max > 0 ? s->t_max : total_epochs;
    if (t_max <= 0)
        return base_lr;
    return s->eta_min +
           (base_lr - s->eta_min) * (1 + cos(M_PI * (double)epoch / t_max)) / 2;
}

static const struct {
    int type; /* enum cnn_schedule_type */
    schedule_fn lr;
} schedules[] = {
    {CNN_SCHED_CONSTANT, constant_lr},     {CNN_SCHED_STEP, step_lr},
    {CNN_SCHED_MULTISTEP, multistep_lr},   {CNN_SCHED_EXPONENTIAL, exponential_lr},
    {CNN_SCHED_COSINE, cosine_lr},
};

/* The warm-up factor of step `step`: warmup_start at step 0, rising
 * linearly to 1 at step W = round(warmup_epochs * steps_per_epoch). */
static double warmup(const cnn_schedule_config *s, int64_t step, int64_t steps_per_epoch)
{
    if (!(s->warmup_epochs > 0) || steps_per_epoch <= 0)
        return 1;
    double w = round(s->warmup_epochs * (double)steps_per_epoch);
    if ((double)step >= w)
        return 1;
    return s->warmup_start + (1 - s->warmup_start) * (double)step / w;
}

double cnn_schedule_lr(const cnn_schedule_config *s, double base_lr, int64_t epoch, int64_t step,
                       int64_t steps_per_epoch, int total_epochs)
{
    double lr = base_lr; /* an unknown type: constant */
    for (size_t i = 0; i < sizeof schedules / sizeof schedules[0]; i++)
        if (schedules[i].type == s->type)
            lr = schedules[i].lr(s, base_lr, epoch, total_epochs);
    return lr * warmup(s, step, steps_per_epoch);
}
