/* SPDX-License-Identifier: MIT */
/*
 * test_metrics.c -- the Prometheus registry as a scrape sees it: exact counts under threads,
 * histogram buckets, and render output read back by a small text-format 0.0.4 parser.
 */
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "trailhook/clock.h"
#include "trailhook/metrics.h"

/* ---- a small exposition parser ---------------------------------------------------------- */

#define MAX_FAMILIES 64
#define MAX_SAMPLES  256
#define MAX_LABELS   8

struct pfamily {
    char name[128];
    char type[16]; /* "" until its TYPE line */
    char help[256];
    size_t nsamples;
};

struct plabel {
    char name[64];
    char value[256]; /* unescaped */
};

struct psample {
    char key[512]; /* name{labels} exactly as rendered */
    char name[128];
    struct plabel labels[MAX_LABELS];
    size_t nlabels;
    char text[48]; /* the value as rendered */
    double value;
};

struct expo {
    struct pfamily families[MAX_FAMILIES];
    size_t nfamilies;
    struct psample samples[MAX_SAMPLES];
    size_t nsamples;
    double last_bucket; /* histogram checks across lines: cumulative, +Inf equals _count */
    double inf_bucket;
};

static bool is_name_char(char c, bool first)
{
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    return alpha || (!first && c >= '0' && c <= '9');
}

/* Copies the metric name at *p into @p out and advances *p past it. */
static void parse_name(const char **p, const char *end, char *out, size_t outlen, bool label)
{
    size_t n = 0;
    while (*p + n < end && is_name_char((*p)[n], n == 0) && !(label && (*p)[n] == ':')) {
        n++;
    }
    if (n == 0 || n >= outlen) {
        fail_msg("bad name at \"%.*s\"", (int)(end - *p), *p);
    }
    memcpy(out, *p, n);
    out[n] = '\0';
    *p += n;
}

/* Unescapes up to @p stop (or the end); only the escapes listed in @p escapes are legal. */
static const char *unescape(const char *p, const char *end, char stop, const char *escapes,
                            char *out, size_t outlen)
{
    size_t o = 0;
    while (p < end && *p != stop) {
        char c = *p++;
        if (c == '\\') {
            if (p == end || strchr(escapes, *p) == NULL) {
                fail_msg("illegal escape in \"%.*s\"", (int)(end - p), p);
            }
            c = *p == 'n' ? '\n' : *p;
            p++;
        }
        assert_true(o + 1 < outlen);
        out[o++] = c;
    }
    out[o] = '\0';
    return p;
}

static struct pfamily *current_family(struct expo *e)
{
    if (e->nfamilies == 0) {
        fail_msg("a sample before any # HELP / # TYPE");
    }
    return &e->families[e->nfamilies - 1];
}

static void parse_help(struct expo *e, const char *p, const char *end)
{
    struct pfamily *f = NULL;
    assert_true(e->nfamilies < MAX_FAMILIES);
    f = &e->families[e->nfamilies++];
    memset(f, 0, sizeof(*f));
    parse_name(&p, end, f->name, sizeof(f->name), false);
    for (size_t i = 0; i + 1 < e->nfamilies; i++) {
        if (strcmp(e->families[i].name, f->name) == 0) {
            fail_msg("family %s appears twice", f->name);
        }
    }
    assert_true(p < end && *p == ' ');
    unescape(p + 1, end, '\0', "\\n", f->help, sizeof(f->help));
}

static void parse_type(struct expo *e, const char *p, const char *end)
{
    struct pfamily *f = current_family(e);
    char name[128];
    parse_name(&p, end, name, sizeof(name), false);
    if (strcmp(name, f->name) != 0 || f->type[0] != '\0') {
        fail_msg("# TYPE %s does not follow its # HELP", name);
    }
    assert_true(p < end && *p == ' ');
    p++;
    assert_true((size_t)(end - p) < sizeof(f->type));
    memcpy(f->type, p, (size_t)(end - p));
    f->type[end - p] = '\0';
    if (strcmp(f->type, "counter") != 0 && strcmp(f->type, "gauge") != 0 &&
        strcmp(f->type, "histogram") != 0) {
        fail_msg("unknown type %s", f->type);
    }
}

/* {name="value",...}: at least one pair, no trailing comma, escapes \\ \" \n only. */
static const char *parse_labels(struct psample *s, const char *p, const char *end)
{
    p++;
    for (;;) {
        struct plabel *l = &s->labels[s->nlabels];
        assert_true(s->nlabels < MAX_LABELS);
        parse_name(&p, end, l->name, sizeof(l->name), true);
        if (end - p < 2 || p[0] != '=' || p[1] != '"') {
            fail_msg("expected =\" in \"%.*s\"", (int)(end - p), p);
        }
        p = unescape(p + 2, end, '"', "\\\"n", l->value, sizeof(l->value));
        assert_true(p < end && *p == '"');
        s->nlabels++;
        p++;
        if (p < end && *p == '}') {
            return p + 1;
        }
        assert_true(p < end && *p == ',');
        p++;
    }
}

/* The sample must belong to the family whose TYPE came last. @return the name's suffix. */
static const char *check_membership(const struct pfamily *f, const char *name)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    size_t n = strlen(f->name);
    if (strcmp(name, f->name) == 0 && strcmp(f->type, "histogram") != 0) {
        return "";
    }
    for (size_t i = 0; i < 3 && strcmp(f->type, "histogram") == 0; i++) {
        if (strncmp(name, f->name, n) == 0 && strcmp(name + n, suffixes[i]) == 0) {
            return suffixes[i];
        }
    }
    fail_msg("sample %s outside its family %s", name, f->name);
    return NULL;
}

/* Histogram counts are integers with no exponent; other values may be special. */
static double parse_value(const char *text, bool integer)
{
    char *stop = NULL;
    double v = 0;
    if (integer) {
        assert_true(text[0] != '\0' && strspn(text, "0123456789") == strlen(text));
    } else if (strcmp(text, "+Inf") == 0 || strcmp(text, "-Inf") == 0) {
        return text[0] == '+' ? INFINITY : -INFINITY;
    } else if (strcmp(text, "NaN") == 0) {
        return NAN;
    } else if (text[0] == '\0' || strspn(text, "0123456789+-.e") != strlen(text)) {
        fail_msg("bad value \"%s\"", text);
    }
    v = strtod(text, &stop);
    assert_true(*stop == '\0');
    return v;
}

static void check_histogram_line(struct expo *e, const char *suffix, const struct psample *s)
{
    const struct plabel *le = s->nlabels > 0 ? &s->labels[s->nlabels - 1] : NULL;
    if (strcmp(suffix, "_bucket") == 0) {
        assert_non_null(le);
        assert_string_equal(le->name, "le");
        assert_true(s->value >= e->last_bucket);
        e->last_bucket = s->value;
        if (strcmp(le->value, "+Inf") == 0) {
            e->inf_bucket = s->value;
        }
    } else if (strcmp(suffix, "_count") == 0) {
        assert_true(s->value == e->inf_bucket);
        e->last_bucket = 0;
        e->inf_bucket = -1;
    }
}

static void parse_sample(struct expo *e, const char *p, const char *end)
{
    const char *start = p;
    struct pfamily *f = current_family(e);
    struct psample *s = NULL;
    const char *suffix = NULL;
    bool integer = false;

    assert_true(e->nsamples < MAX_SAMPLES);
    s = &e->samples[e->nsamples++];
    memset(s, 0, sizeof(*s));
    parse_name(&p, end, s->name, sizeof(s->name), false);
    if (p < end && *p == '{') {
        p = parse_labels(s, p, end);
    }
    assert_true(p < end && *p == ' ' && (size_t)(p - start) < sizeof(s->key));
    memcpy(s->key, start, (size_t)(p - start));
    p++;
    assert_true((size_t)(end - p) < sizeof(s->text));
    memcpy(s->text, p, (size_t)(end - p));
    suffix = check_membership(f, s->name);
    integer = strcmp(suffix, "_bucket") == 0 || strcmp(suffix, "_count") == 0;
    s->value = parse_value(s->text, integer);
    if (strcmp(f->type, "counter") == 0) {
        assert_true(isfinite(s->value) && s->value >= 0);
    }
    check_histogram_line(e, suffix, s);
    f->nsamples++;
}

static void parse_line(struct expo *e, const char *p, const char *end)
{
    if ((size_t)(end - p) > 7 && strncmp(p, "# HELP ", 7) == 0) {
        parse_help(e, p + 7, end);
    } else if ((size_t)(end - p) > 7 && strncmp(p, "# TYPE ", 7) == 0) {
        parse_type(e, p + 7, end);
    } else if (p < end && *p != '#') {
        parse_sample(e, p, end);
    } else {
        fail_msg("unexpected line \"%.*s\"", (int)(end - p), p);
    }
}

/* Every line ends in '\n'; no blank lines. @return new, free with free(). */
static struct expo *parse_exposition(const char *text, size_t len)
{
    struct expo *e = calloc(1, sizeof(*e));
    const char *p = text;
    const char *end = text + len;
    assert_non_null(e);
    e->inf_bucket = -1;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            fail_msg("last line has no newline");
        }
        parse_line(e, p, nl);
        p = nl + 1;
    }
    return e;
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* Renders and checks the length. @return new text, free with free(). */
static char *render(struct th_metrics *m)
{
    size_t len = 0;
    char *text = th_metrics_render(m, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

/* Renders and parses. @return new, free with free(). */
static struct expo *scrape(struct th_metrics *m)
{
    char *text = render(m);
    struct expo *e = parse_exposition(text, strlen(text));
    free(text);
    return e;
}

static const struct psample *find_sample(const struct expo *e, const char *key)
{
    for (size_t i = 0; i < e->nsamples; i++) {
        if (strcmp(e->samples[i].key, key) == 0) {
            return &e->samples[i];
        }
    }
    return NULL;
}

static double value_of(const struct expo *e, const char *key)
{
    const struct psample *s = find_sample(e, key);
    if (s == NULL) {
        fail_msg("no sample %s", key);
    }
    return s->value;
}

static const struct pfamily *find_family(const struct expo *e, const char *name)
{
    for (size_t i = 0; i < e->nfamilies; i++) {
        if (strcmp(e->families[i].name, name) == 0) {
            return &e->families[i];
        }
    }
    return NULL;
}

static int setup(void **state)
{
    *state = th_metrics_new();
    return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    th_metrics_free(*state);
    return 0;
}

/* ---- tests ------------------------------------------------------------------------------ */

#define NTHREADS 4
#define NADDS    10000

struct worker {
    struct th_metrics *m;
    uint64_t step;
    struct th_counter *counter;
};

static void *work(void *arg)
{
    static const double buckets[] = {0.25, 1};
    struct worker *w = arg;
    struct th_histogram *h =
        th_metrics_histogram(w->m, "th_test_work_seconds", "Work time.", "", buckets, 2);
    struct th_gauge *g = th_metrics_gauge(w->m, "th_test_last_step", "Last step.", "");

    w->counter = th_metrics_counter(w->m, "th_test_adds_total", "Adds.", "");
    for (int i = 0; i < NADDS; i++) {
        th_counter_add(w->counter, w->step);
        th_histogram_observe(h, 0.5);
        th_gauge_set(g, (double)w->step);
    }
    return NULL;
}

static void *scrape_while_working(void *arg)
{
    for (int i = 0; i < 20; i++) {
        free(th_metrics_render(arg, NULL));
    }
    return NULL;
}

static void threads_lose_no_updates(void **state)
{
    struct th_metrics *m = *state;
    struct worker w[NTHREADS];
    pthread_t t[NTHREADS + 1];
    struct expo *e = NULL;
    double last = 0;

    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){m, (uint64_t)i + 1, NULL};
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    assert_int_equal(pthread_create(&t[NTHREADS], NULL, scrape_while_working, m), 0);
    for (int i = 0; i <= NTHREADS; i++) {
        pthread_join(t[i], NULL);
    }
    for (int i = 1; i < NTHREADS; i++) {
        assert_ptr_equal(w[i].counter, w[0].counter);
    }
    assert_int_equal(th_counter_value(w[0].counter), NADDS * (1 + 2 + 3 + 4));
    e = scrape(m);
    assert_true(value_of(e, "th_test_adds_total") == NADDS * (1 + 2 + 3 + 4));
    assert_true(value_of(e, "th_test_work_seconds_bucket{le=\"0.25\"}") == 0);
    assert_true(value_of(e, "th_test_work_seconds_bucket{le=\"1\"}") == NTHREADS * NADDS);
    assert_true(value_of(e, "th_test_work_seconds_bucket{le=\"+Inf\"}") == NTHREADS * NADDS);
    assert_true(value_of(e, "th_test_work_seconds_count") == NTHREADS * NADDS);
    assert_true(value_of(e, "th_test_work_seconds_sum") == 0.5 * NTHREADS * NADDS);
    last = value_of(e, "th_test_last_step");
    assert_true(last >= 1 && last <= NTHREADS);
    free(e);
}

static void same_name_and_labels_is_same_series(void **state)
{
    struct th_metrics *m = *state;
    struct th_counter *a =
        th_metrics_counter(m, "th_test_events_total", "Events received.", "result=\"accepted\"");
    struct th_counter *b =
        th_metrics_counter(m, "th_test_events_total", "Ignored help.", "result=\"accepted\"");
    struct th_counter *r =
        th_metrics_counter(m, "th_test_events_total", "Ignored help.", "result=\"rejected\"");
    struct expo *e = NULL;

    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, r);
    th_counter_add(a, 2);
    th_counter_add(b, 3);
    th_counter_add(r, 7);
    assert_int_equal(th_counter_value(a), 5);
    assert_int_equal(th_counter_value(r), 7);
    e = scrape(m);
    assert_true(value_of(e, "th_test_events_total{result=\"accepted\"}") == 5);
    assert_true(value_of(e, "th_test_events_total{result=\"rejected\"}") == 7);
    assert_string_equal(find_family(e, "th_test_events_total")->help, "Events received.");
    assert_int_equal(find_family(e, "th_test_events_total")->nsamples, 2);
    free(e);
}

static void gauge_holds_negative_and_fractional_values(void **state)
{
    struct th_metrics *m = *state;
    struct th_gauge *g = th_metrics_gauge(m, "th_test_temperature", "A reading.", "");
    struct expo *e = NULL;

    assert_true(th_gauge_value(g) == 0.0);
    th_gauge_set(g, -3.25);
    assert_true(th_gauge_value(g) == -3.25);
    th_gauge_set(g, 0.1);
    assert_true(th_gauge_value(g) == 0.1);
    e = scrape(m);
    assert_string_equal(find_sample(e, "th_test_temperature")->text, "0.1");
    assert_true(value_of(e, "th_test_temperature") == 0.1);
    free(e);
}

static void histogram_buckets_are_cumulative_and_inclusive(void **state)
{
    static const double buckets[] = {0.25, 0.5, 1, 2.5};
    struct th_metrics *m = *state;
    struct th_histogram *h =
        th_metrics_histogram(m, "th_test_latency_seconds", "Latency.", "path=\"/x\"", buckets, 4);
    struct expo *e = NULL;

    th_histogram_observe(h, 0.25); /* equal to a bound: counts in le="0.25" */
    th_histogram_observe(h, 0.5);
    th_histogram_observe(h, 0.75);
    th_histogram_observe(h, 1);
    th_histogram_observe(h, 8);
    th_histogram_observe(h, nextafter(2.5, 3)); /* just above: next bucket */
    e = scrape(m);
    assert_true(value_of(e, "th_test_latency_seconds_bucket{path=\"/x\",le=\"0.25\"}") == 1);
    assert_true(value_of(e, "th_test_latency_seconds_bucket{path=\"/x\",le=\"0.5\"}") == 2);
    assert_true(value_of(e, "th_test_latency_seconds_bucket{path=\"/x\",le=\"1\"}") == 4);
    assert_true(value_of(e, "th_test_latency_seconds_bucket{path=\"/x\",le=\"2.5\"}") == 4);
    assert_true(value_of(e, "th_test_latency_seconds_bucket{path=\"/x\",le=\"+Inf\"}") == 6);
    assert_true(value_of(e, "th_test_latency_seconds_count{path=\"/x\"}") == 6);
    assert_true(value_of(e, "th_test_latency_seconds_sum{path=\"/x\"}") ==
                10.5 + nextafter(2.5, 3));
    assert_int_equal(find_family(e, "th_test_latency_seconds")->nsamples, 4 + 1 + 2);
    free(e);
}

static void histogram_adds_its_own_inf_bucket_once(void **state)
{
    const double buckets[] = {1, INFINITY};
    struct th_metrics *m = *state;
    struct th_histogram *h =
        th_metrics_histogram(m, "th_test_size_bytes", "Sizes.", "", buckets, 2);
    struct expo *e = NULL;

    th_histogram_observe(h, 5);
    e = scrape(m);
    assert_int_equal(find_family(e, "th_test_size_bytes")->nsamples, 2 + 2);
    assert_true(value_of(e, "th_test_size_bytes_bucket{le=\"1\"}") == 0);
    assert_true(value_of(e, "th_test_size_bytes_bucket{le=\"+Inf\"}") == 1);
    free(e);
}

static void render_is_text_format_004(void **state)
{
    static const double buckets[] = {0.005, 0.25, 1};
    struct th_metrics *m = *state;
    const char *want = "# HELP th_test_requests_total Requests answered.\n"
                       "# TYPE th_test_requests_total counter\n"
                       "th_test_requests_total{path=\"/events\",code=\"202\"} 3\n"
                       "th_test_requests_total{path=\"/events\",code=\"400\"} 0\n"
                       "# HELP th_test_depth Items waiting.\n"
                       "# TYPE th_test_depth gauge\n"
                       "th_test_depth -1.5\n"
                       "# HELP th_test_answer_seconds Time to answer.\n"
                       "# TYPE th_test_answer_seconds histogram\n"
                       "th_test_answer_seconds_bucket{le=\"0.005\"} 1\n"
                       "th_test_answer_seconds_bucket{le=\"0.25\"} 1\n"
                       "th_test_answer_seconds_bucket{le=\"1\"} 2\n"
                       "th_test_answer_seconds_bucket{le=\"+Inf\"} 3\n"
                       "th_test_answer_seconds_sum 3.50390625\n"
                       "th_test_answer_seconds_count 3\n"
                       "# HELP process_cpu_seconds_total ";
    struct th_histogram *h = NULL;
    char *text = NULL;

    th_counter_add(th_metrics_counter(m, "th_test_requests_total", "Requests answered.",
                                      "path=\"/events\",code=\"202\""),
                   3);
    th_metrics_counter(m, "th_test_requests_total", "", "path=\"/events\",code=\"400\"");
    th_gauge_set(th_metrics_gauge(m, "th_test_depth", "Items waiting.", ""), -1.5);
    h = th_metrics_histogram(m, "th_test_answer_seconds", "Time to answer.", "", buckets, 3);
    th_histogram_observe(h, 0.00390625);
    th_histogram_observe(h, 0.5);
    th_histogram_observe(h, 3);
    text = render(m);
    if (strncmp(text, want, strlen(want)) != 0) {
        print_error("rendered:\n%s\n", text);
        fail();
    }
    free(text);
}

static void numbers_are_spelled_as_prometheus_reads_them(void **state)
{
    static const struct {
        const char *labels;
        double v;
        const char *line;
    } cases[] = {
        {"v=\"pinf\"", INFINITY, "th_test_num{v=\"pinf\"} +Inf\n"},
        {"v=\"ninf\"", -INFINITY, "th_test_num{v=\"ninf\"} -Inf\n"},
        {"v=\"nan\"", NAN, "th_test_num{v=\"nan\"} NaN\n"},
        {"v=\"tenth\"", 0.1, "th_test_num{v=\"tenth\"} 0.1\n"},
        {"v=\"small\"", 1e-05, "th_test_num{v=\"small\"} 1e-05\n"},
        {"v=\"whole\"", 1234567, "th_test_num{v=\"whole\"} 1234567\n"},
        {"v=\"third\"", 1.0 / 3, "th_test_num{v=\"third\"} 0.3333333333333333\n"},
    };
    struct th_metrics *m = *state;
    char *text = NULL;
    struct expo *e = NULL;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        th_gauge_set(th_metrics_gauge(m, "th_test_num", "Numbers.", cases[i].labels), cases[i].v);
    }
    th_counter_add(th_metrics_counter(m, "th_test_big_total", "Big.", ""), UINT64_MAX);
    text = render(m);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_non_null(strstr(text, cases[i].line));
    }
    assert_non_null(strstr(text, "\nth_test_big_total 18446744073709551615\n"));
    e = parse_exposition(text, strlen(text));
    assert_true(isnan(value_of(e, "th_test_num{v=\"nan\"}")));
    assert_true(value_of(e, "th_test_num{v=\"third\"}") == 1.0 / 3);
    free(e);
    free(text);
}

static void families_render_in_order_even_when_empty(void **state)
{
    struct th_metrics *m = *state;
    static const char *const order[] = {
        "th_test_b",
        "th_test_a_total",
        "th_test_c_seconds",
        "th_test_d_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    };
    static const double buckets[] = {1};
    struct th_counter *declared = NULL;
    struct expo *e = NULL;

    th_metrics_gauge(m, "th_test_b", "B.", "");
    th_metrics_counter(m, "th_test_a_total", "A.", "");
    /* NULL labels declare the family only, so it exists from startup without a series. */
    th_metrics_histogram(m, "th_test_c_seconds", "C.", NULL, buckets, 1);
    declared = th_metrics_counter(m, "th_test_d_total", "D.", NULL);
    assert_non_null(declared);
    th_counter_add(declared, 1);
    e = scrape(m);
    assert_int_equal(e->nfamilies, sizeof(order) / sizeof(order[0]));
    for (size_t i = 0; i < e->nfamilies; i++) {
        assert_string_equal(e->families[i].name, order[i]);
    }
    assert_string_equal(e->families[2].type, "histogram");
    assert_int_equal(e->families[2].nsamples, 0);
    assert_string_equal(e->families[3].type, "counter");
    assert_int_equal(e->families[3].nsamples, 0);
    free(e);
}

static void label_values_are_escaped_and_truncated_whole(void **state)
{
    struct th_metrics *m = *state;
    const char *raw = "a\\b\"c\nd";
    char value[64];
    char labels[80];
    char small[8];
    struct expo *e = NULL;

    assert_ptr_equal(th_metrics_escape(raw, value, sizeof(value)), value);
    assert_string_equal(value, "a\\\\b\\\"c\\nd");
    assert_string_equal(th_metrics_escape("ab\"", small, 4), "ab"); /* \" does not fit */
    assert_string_equal(th_metrics_escape("ab\"", small, 5), "ab\\\"");
    assert_string_equal(th_metrics_escape("abc", small, 1), "");
    assert_string_equal(th_metrics_escape("\xc3\xa9", small, 2), ""); /* é is not split */
    assert_string_equal(th_metrics_escape("\xc3\xa9", small, 3), "\xc3\xa9");
    assert_string_equal(th_metrics_escape("\xff", small, sizeof(small)), "\xef\xbf\xbd");
    assert_string_equal(th_metrics_escape(NULL, small, sizeof(small)), "");
    snprintf(labels, sizeof(labels), "dest=\"%s\"", value);
    th_counter_add(th_metrics_counter(m, "th_test_sent_total", "Sent.", labels), 1);
    e = scrape(m);
    assert_int_equal(find_family(e, "th_test_sent_total")->nsamples, 1);
    assert_string_equal(e->samples[0].labels[0].value, raw);
    free(e);
}

static void help_text_is_escaped(void **state)
{
    struct th_metrics *m = *state;
    char *text = NULL;
    struct expo *e = NULL;

    th_metrics_gauge(m, "th_test_helpful", "Line one\nback\\slash \"quoted\"", "");
    text = render(m);
    assert_non_null(
        strstr(text, "# HELP th_test_helpful Line one\\nback\\\\slash \"quoted\"\n# TYPE"));
    e = parse_exposition(text, strlen(text));
    assert_string_equal(find_family(e, "th_test_helpful")->help,
                        "Line one\nback\\slash \"quoted\"");
    free(e);
    free(text);
}

static int probe_open_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 4096; fd++) {
        if (fcntl(fd, F_GETFD) != -1) {
            n++;
        }
    }
    return n;
}

static void process_metrics_are_sane(void **state)
{
    struct th_metrics *m = *state;
    double now = (double)th_clock_now_ms() / 1000.0;
    struct expo *e = scrape(m);
    double fds = value_of(e, "process_open_fds");
    int extra = -1;

    assert_string_equal(find_family(e, "process_cpu_seconds_total")->type, "counter");
    assert_string_equal(find_family(e, "process_open_fds")->type, "gauge");
    assert_true(value_of(e, "process_cpu_seconds_total") >= 0);
    assert_true(value_of(e, "process_resident_memory_bytes") > 0);
    assert_true(value_of(e, "process_virtual_memory_bytes") >=
                value_of(e, "process_resident_memory_bytes"));
    assert_true(fds >= 3);
    assert_true(value_of(e, "process_max_fds") >= fds);
    assert_true(fabs(value_of(e, "process_start_time_seconds") - now) < 60);
    free(e);
    /* Probed independently: the descriptor render opens to count with is not in the count. */
    assert_true(fds == (double)probe_open_fds());
    extra = dup(STDIN_FILENO);
    assert_true(extra >= 0);
    e = scrape(m);
    assert_true(value_of(e, "process_open_fds") == fds + 1);
    close(extra);
    free(e);
}

struct collect_state {
    int calls;
};

static void collect_depth(void *ctx, struct th_metrics *m)
{
    struct collect_state *c = ctx;
    c->calls++;
    th_gauge_set(th_metrics_gauge(m, "th_test_queue_depth", "Items queued.", ""), 10.0 * c->calls);
}

static void collect_callback_sets_gauges_on_render(void **state)
{
    struct th_metrics *m = *state;
    struct collect_state c = {0};
    struct expo *e = NULL;

    th_metrics_on_collect(m, collect_depth, &c);
    e = scrape(m);
    assert_int_equal(c.calls, 1);
    assert_true(value_of(e, "th_test_queue_depth") == 10);
    free(e);
    e = scrape(m);
    assert_int_equal(c.calls, 2);
    assert_true(value_of(e, "th_test_queue_depth") == 20);
    free(e);
}

static void misuse_returns_a_dummy_that_is_not_rendered(void **state)
{
    static const double descending[] = {1, 0.5};
    struct th_metrics *m = *state;
    struct th_counter *c = th_metrics_counter(m, "th_test_clash_total", "Clash.", "");
    struct th_gauge *g = th_metrics_gauge(m, "th_test_clash_total", "Clash.", "");
    struct th_histogram *h =
        th_metrics_histogram(m, "th_test_clash_total", "Clash.", "", descending, 2);
    struct th_gauge *bad = th_metrics_gauge(m, "th test bad", "Bad name.", "");
    struct th_gauge *reserved = th_metrics_gauge(m, "process_open_fds", "Mine.", "");
    struct th_histogram *unordered =
        th_metrics_histogram(m, "th_test_unordered", "Unordered.", "", descending, 2);
    struct expo *e = NULL;

    assert_non_null(g);
    assert_non_null(h);
    assert_non_null(bad);
    assert_non_null(reserved);
    assert_non_null(unordered);
    th_counter_add(c, 1);
    th_gauge_set(g, 42);
    th_histogram_observe(h, 0.7);
    th_gauge_set(bad, 42);
    th_gauge_set(reserved, 42);
    th_histogram_observe(unordered, 0.7);
    e = scrape(m);
    assert_string_equal(find_family(e, "th_test_clash_total")->type, "counter");
    assert_int_equal(find_family(e, "th_test_clash_total")->nsamples, 1);
    assert_true(value_of(e, "th_test_clash_total") == 1);
    assert_null(find_family(e, "th_test_unordered"));
    assert_true(value_of(e, "process_open_fds") != 42);
    assert_int_equal(e->nfamilies, 1 + 6);
    free(e);
}

static void free_accepts_null(void **state)
{
    (void)state;
    th_metrics_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(threads_lose_no_updates, setup, teardown),
        cmocka_unit_test_setup_teardown(same_name_and_labels_is_same_series, setup, teardown),
        cmocka_unit_test_setup_teardown(gauge_holds_negative_and_fractional_values, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(histogram_buckets_are_cumulative_and_inclusive, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(histogram_adds_its_own_inf_bucket_once, setup, teardown),
        cmocka_unit_test_setup_teardown(render_is_text_format_004, setup, teardown),
        cmocka_unit_test_setup_teardown(numbers_are_spelled_as_prometheus_reads_them, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(families_render_in_order_even_when_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(label_values_are_escaped_and_truncated_whole, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(help_text_is_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(process_metrics_are_sane, setup, teardown),
        cmocka_unit_test_setup_teardown(collect_callback_sets_gauges_on_render, setup, teardown),
        cmocka_unit_test_setup_teardown(misuse_returns_a_dummy_that_is_not_rendered, setup,
                                        teardown),
        cmocka_unit_test(free_accepts_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
