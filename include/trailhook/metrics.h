/* SPDX-License-Identifier: MIT */
/*
 * metrics.h -- Prometheus metrics (text exposition format 0.0.4): counters, gauges and
 * histograms with fixed label sets, and the standard process_* metrics.
 * Series are created up front (or rarely) under a lock and then updated lock-free with atomics,
 * so counting on the request path costs a few atomic adds. Threads: every function may be called
 * from any thread; series pointers stay valid until th_metrics_free().
 */
#ifndef TRAILHOOK_METRICS_H
#define TRAILHOOK_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct th_metrics;
struct th_counter;
struct th_gauge;
struct th_histogram;

/** @return new registry, free with th_metrics_free(). Records the process start time. */
struct th_metrics *th_metrics_new(void);
void th_metrics_free(struct th_metrics *m);

/**
 * Gets or creates the counter series @p name{labels}. @p name must end in "_total".
 * @param[in] labels rendered label pairs without braces, e.g. "handler=\"/events\",code=\"202\"",
 *                   or "" for none; values must already be escaped (th_metrics_escape); NULL
 *                   registers the family alone (HELP/TYPE from startup) and returns a dummy
 * @return the series (borrowed, valid until th_metrics_free); the same pointer for the same
 *         name and labels. A family's help text is taken from its first registration.
 */
struct th_counter *th_metrics_counter(struct th_metrics *m, const char *name, const char *help,
                                      const char *labels);
void th_counter_add(struct th_counter *c, uint64_t n);
uint64_t th_counter_value(const struct th_counter *c);

/** Gets or creates a gauge series (as th_metrics_counter). */
struct th_gauge *th_metrics_gauge(struct th_metrics *m, const char *name, const char *help,
                                  const char *labels);
void th_gauge_set(struct th_gauge *g, double v);
double th_gauge_value(const struct th_gauge *g);

/**
 * Gets or creates a histogram series with upper bounds @p buckets (ascending, +Inf added).
 * Rendered as name_bucket{...,le="..."} (cumulative), name_sum, name_count.
 */
struct th_histogram *th_metrics_histogram(struct th_metrics *m, const char *name, const char *help,
                                          const char *labels, const double *buckets,
                                          size_t nbuckets);
void th_histogram_observe(struct th_histogram *h, double v);

/** Called at the start of every render, to set gauges that are read rather than counted. */
typedef void (*th_metrics_collect_cb)(void *ctx, struct th_metrics *m);

/** Registers @p cb (one only; a later call replaces it). */
void th_metrics_on_collect(struct th_metrics *m, th_metrics_collect_cb cb, void *ctx);

/**
 * Renders every family (# HELP, # TYPE, samples; families in registration order) followed by
 * process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds and process_start_time_seconds.
 * @return new string, free with free(); *len its length.
 */
char *th_metrics_render(struct th_metrics *m, size_t *len);

/**
 * Escapes a label value (backslash, double quote, newline) into @p out.
 * @return @p out.
 */
char *th_metrics_escape(const char *value, char *out, size_t outlen);

/** The content type of th_metrics_render's output. */
#define TH_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
