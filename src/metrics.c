/* SPDX-License-Identifier: MIT */
/*
 * metrics.c -- the Prometheus registry: counter, gauge and histogram series created under a lock
 * and updated with relaxed atomics, rendered as text format 0.0.4 with the process_* metrics
 * read from getrusage, getrlimit and /proc/self.
 */
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "trailhook/clock.h"
#include "trailhook/log.h"
#include "trailhook/mem.h"
#include "trailhook/metrics.h"

enum metric_type {
    METRIC_COUNTER,
    METRIC_GAUGE,
    METRIC_HISTOGRAM,
    METRIC_NTYPES,
};

static const char *const type_names[METRIC_NTYPES] = {"counter", "gauge", "histogram"};

struct th_counter {
    _Atomic uint64_t value;
};

/* C11 has no atomic double, so a gauge keeps the bit pattern of its value. */
struct th_gauge {
    _Atomic uint64_t bits;
};

struct th_histogram {
    const double *bounds;     /* the family's (or NULL for a dummy); +Inf is implicit */
    size_t nbounds;           /* counts has nbounds + 1 slots, the last one for +Inf */
    _Atomic uint64_t *counts; /* per bucket, not cumulative: one add per observation */
    _Atomic uint64_t sum_bits;
};

struct series {
    char *labels;
    enum metric_type type;
    union {
        struct th_counter counter;
        struct th_gauge gauge;
        struct th_histogram histogram;
    } u;
};

struct family {
    char *name;
    char *help;
    enum metric_type type;
    double *bounds; /* histograms: upper bounds from the first registration */
    size_t nbounds;
    struct series **series; /* one allocation per series, so a pointer handed out never moves */
    size_t nseries;
    size_t cap;
};

struct th_metrics {
    pthread_mutex_t lock; /* guards the family list and the callback, never the values */
    struct family **families;
    size_t nfamilies;
    size_t cap;
    /* Handed out on misuse (type clash, bad name or buckets): safe to update, never rendered. */
    struct series *dummy[METRIC_NTYPES];
    pthread_mutex_t collect_lock; /* two scrapes at once must not run the callback twice over */
    th_metrics_collect_cb collect;
    void *collect_ctx;
    double start_time;
};

/* One get-or-create request, so the registration helpers take one argument. */
struct want {
    const char *name;
    const char *help;
    const char *labels; /* NULL: declare the family only */
    enum metric_type type;
    const double *bounds;
    size_t nbounds;
};

/* Rendered after the registry; their names are reserved so they cannot appear twice. */
static const struct {
    const char *name;
    const char *help;
    enum metric_type type;
} process_families[] = {
    {"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
     METRIC_COUNTER},
    {"process_resident_memory_bytes", "Resident memory size in bytes.", METRIC_GAUGE},
    {"process_virtual_memory_bytes", "Virtual memory size in bytes.", METRIC_GAUGE},
    {"process_open_fds", "Number of open file descriptors.", METRIC_GAUGE},
    {"process_max_fds", "Maximum number of open file descriptors.", METRIC_GAUGE},
    {"process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
     METRIC_GAUGE},
};

#define NPROCESS (sizeof(process_families) / sizeof(process_families[0]))

static uint64_t double_bits(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof(b));
    return b;
}

static double bits_double(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof(v));
    return v;
}

/* ---- series and families ---------------------------------------------------------------- */

static struct series *series_new(enum metric_type type, const double *bounds, size_t nbounds,
                                 const char *labels)
{
    struct series *s = th_xcalloc(1, sizeof(*s));
    s->labels = th_xstrdup(labels);
    s->type = type;
    if (type == METRIC_COUNTER) {
        atomic_init(&s->u.counter.value, 0);
    } else if (type == METRIC_GAUGE) {
        atomic_init(&s->u.gauge.bits, double_bits(0.0));
    } else {
        struct th_histogram *h = &s->u.histogram;
        h->bounds = bounds;
        h->nbounds = nbounds;
        h->counts = th_xcalloc(nbounds + 1, sizeof(*h->counts));
        for (size_t i = 0; i <= nbounds; i++) {
            atomic_init(&h->counts[i], 0);
        }
        atomic_init(&h->sum_bits, double_bits(0.0));
    }
    return s;
}

static void series_free(struct series *s)
{
    if (s == NULL) {
        return;
    }
    if (s->type == METRIC_HISTOGRAM) {
        free(s->u.histogram.counts);
    }
    free(s->labels);
    free(s);
}

static void family_free(struct family *f)
{
    if (f == NULL) {
        return;
    }
    for (size_t i = 0; i < f->nseries; i++) {
        series_free(f->series[i]);
    }
    free(f->series);
    free(f->bounds);
    free(f->help);
    free(f->name);
    free(f);
}

static struct family *family_new(const struct want *w)
{
    struct family *f = th_xcalloc(1, sizeof(*f));
    f->name = th_xstrdup(w->name);
    f->help = th_xstrdup(w->help);
    f->type = w->type;
    if (w->type == METRIC_HISTOGRAM && w->nbounds > 0) {
        f->bounds = th_xmalloc(w->nbounds * sizeof(*f->bounds));
        memcpy(f->bounds, w->bounds, w->nbounds * sizeof(*f->bounds));
        f->nbounds = w->nbounds;
    }
    return f;
}

/* Linear: a family has a handful of series and lookups happen at registration, not per update. */
static struct series *family_series(struct family *f, const char *labels)
{
    struct series *s = NULL;
    for (size_t i = 0; i < f->nseries; i++) {
        if (strcmp(f->series[i]->labels, labels) == 0) {
            return f->series[i];
        }
    }
    if (f->nseries == f->cap) {
        f->cap = f->cap == 0 ? 4 : f->cap * 2;
        f->series = th_xrealloc(f->series, f->cap * sizeof(*f->series));
    }
    s = series_new(f->type, f->bounds, f->nbounds, labels);
    f->series[f->nseries++] = s;
    return s;
}

static void add_family(struct th_metrics *m, struct family *f)
{
    if (m->nfamilies == m->cap) {
        m->cap = m->cap == 0 ? 16 : m->cap * 2;
        m->families = th_xrealloc(m->families, m->cap * sizeof(*m->families));
    }
    m->families[m->nfamilies++] = f;
}

static struct family *find_family(const struct th_metrics *m, const char *name)
{
    for (size_t i = 0; i < m->nfamilies; i++) {
        if (strcmp(m->families[i]->name, name) == 0) {
            return m->families[i];
        }
    }
    return NULL;
}

/* ---- validation ------------------------------------------------------------------------- */

/* [a-zA-Z_:][a-zA-Z0-9_:]*, tested byte by byte so the locale cannot widen it. */
static bool valid_name(const char *name)
{
    if (name[0] == '\0' || (name[0] >= '0' && name[0] <= '9')) {
        return false;
    }
    for (const char *p = name; *p != '\0'; p++) {
        bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z');
        bool digit = *p >= '0' && *p <= '9';
        if (!alpha && !digit && *p != '_' && *p != ':') {
            return false;
        }
    }
    return true;
}

static bool reserved_name(const char *name)
{
    for (size_t i = 0; i < NPROCESS; i++) {
        if (strcmp(process_families[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

/* Strictly ascending and no NaN: a NaN bound would make "le" meaningless for every bucket. */
static bool valid_bounds(const double *bounds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (isnan(bounds[i]) || (i > 0 && !(bounds[i - 1] < bounds[i]))) {
            return false;
        }
    }
    return true;
}

static bool valid_want(const struct want *w)
{
    if (!valid_name(w->name) || reserved_name(w->name)) {
        th_log(TH_LOG_ERROR, "metrics", "invalid or reserved metric name \"%s\"; not exported",
               w->name);
        return false;
    }
    if (w->type == METRIC_HISTOGRAM && !valid_bounds(w->bounds, w->nbounds)) {
        th_log(TH_LOG_ERROR, "metrics", "%s: buckets are not strictly ascending; not exported",
               w->name);
        return false;
    }
    if (w->type == METRIC_COUNTER) {
        size_t n = strlen(w->name);
        if (n < 6 || strcmp(w->name + n - 6, "_total") != 0) {
            th_log(TH_LOG_WARN, "metrics", "counter %s should end in _total", w->name);
        }
    }
    return true;
}

static bool same_bounds(const struct family *f, const struct want *w)
{
    return f->nbounds == w->nbounds &&
           (w->nbounds == 0 || memcmp(f->bounds, w->bounds, w->nbounds * sizeof(double)) == 0);
}

/* Finds or creates the family for @p w; NULL (already logged) when the request is misuse. */
static struct family *family_for(struct th_metrics *m, const struct want *w)
{
    struct family *f = find_family(m, w->name);
    if (f == NULL) {
        if (!valid_want(w)) {
            return NULL;
        }
        f = family_new(w);
        add_family(m, f);
        return f;
    }
    if (f->type != w->type) {
        th_log(TH_LOG_ERROR, "metrics", "%s is a %s, not a %s; updates to it are dropped", w->name,
               type_names[f->type], type_names[w->type]);
        return NULL;
    }
    if (w->type == METRIC_HISTOGRAM && !same_bounds(f, w)) {
        th_log(TH_LOG_WARN, "metrics", "%s: other buckets than at registration; keeping those",
               w->name);
    }
    return f;
}

static struct series *get_series(struct th_metrics *m, const struct want *w)
{
    struct series *s = m->dummy[w->type];
    struct family *f = NULL;

    pthread_mutex_lock(&m->lock);
    f = family_for(m, w);
    if (f != NULL && w->labels != NULL) {
        s = family_series(f, w->labels);
    }
    pthread_mutex_unlock(&m->lock);
    return s;
}

/* ---- public registration and updates ---------------------------------------------------- */

struct th_metrics *th_metrics_new(void)
{
    struct th_metrics *m = th_xcalloc(1, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_init(&m->collect_lock, NULL);
    for (int t = 0; t < METRIC_NTYPES; t++) {
        m->dummy[t] = series_new((enum metric_type)t, NULL, 0, "");
    }
    m->start_time = (double)th_clock_now_ms() / 1000.0;
    return m;
}

void th_metrics_free(struct th_metrics *m)
{
    if (m == NULL) {
        return;
    }
    for (size_t i = 0; i < m->nfamilies; i++) {
        family_free(m->families[i]);
    }
    free(m->families);
    for (int t = 0; t < METRIC_NTYPES; t++) {
        series_free(m->dummy[t]);
    }
    pthread_mutex_destroy(&m->collect_lock);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

struct th_counter *th_metrics_counter(struct th_metrics *m, const char *name, const char *help,
                                      const char *labels)
{
    struct want w = {name ? name : "", help ? help : "", labels, METRIC_COUNTER, NULL, 0};
    return &get_series(m, &w)->u.counter;
}

void th_counter_add(struct th_counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
}

uint64_t th_counter_value(const struct th_counter *c)
{
    return atomic_load_explicit(&c->value, memory_order_relaxed);
}

struct th_gauge *th_metrics_gauge(struct th_metrics *m, const char *name, const char *help,
                                  const char *labels)
{
    struct want w = {name ? name : "", help ? help : "", labels, METRIC_GAUGE, NULL, 0};
    return &get_series(m, &w)->u.gauge;
}

void th_gauge_set(struct th_gauge *g, double v)
{
    atomic_store_explicit(&g->bits, double_bits(v), memory_order_relaxed);
}

double th_gauge_value(const struct th_gauge *g)
{
    return bits_double(atomic_load_explicit(&g->bits, memory_order_relaxed));
}

struct th_histogram *th_metrics_histogram(struct th_metrics *m, const char *name, const char *help,
                                          const char *labels, const double *buckets,
                                          size_t nbuckets)
{
    struct want w = {.name = name ? name : "",
                     .help = help ? help : "",
                     .labels = labels,
                     .type = METRIC_HISTOGRAM,
                     .bounds = buckets,
                     .nbounds = nbuckets};
    /* The +Inf bucket is always added; a caller's own would be rendered twice. */
    while (w.nbounds > 0 && isinf(w.bounds[w.nbounds - 1]) && w.bounds[w.nbounds - 1] > 0) {
        w.nbounds--;
    }
    return &get_series(m, &w)->u.histogram;
}

void th_histogram_observe(struct th_histogram *h, double v)
{
    size_t i = 0;
    uint64_t old = 0;
    uint64_t sum = 0;

    /* "le" is inclusive, so a value equal to a bound counts in that bucket; NaN lands in +Inf. */
    while (i < h->nbounds && !(v <= h->bounds[i])) {
        i++;
    }
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    old = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
    do {
        sum = double_bits(bits_double(old) + v);
    } while (!atomic_compare_exchange_weak_explicit(&h->sum_bits, &old, sum, memory_order_relaxed,
                                                    memory_order_relaxed));
}

void th_metrics_on_collect(struct th_metrics *m, th_metrics_collect_cb cb, void *ctx)
{
    pthread_mutex_lock(&m->lock);
    m->collect = cb;
    m->collect_ctx = ctx;
    pthread_mutex_unlock(&m->lock);
}

/* ---- rendering -------------------------------------------------------------------------- */

/*
 * The output buffer has no maximum (STYLE 8): its size follows from the series the code
 * registers, never from input.
 */
struct out {
    char *p;
    size_t len;
    size_t cap;
};

static void out_reserve(struct out *o, size_t more)
{
    if (o->len + more + 1 <= o->cap) {
        return;
    }
    while (o->len + more + 1 > o->cap) {
        o->cap = o->cap == 0 ? 4096 : o->cap * 2;
    }
    o->p = th_xrealloc(o->p, o->cap);
}

static void out_putc(struct out *o, char c)
{
    out_reserve(o, 1);
    o->p[o->len++] = c;
    o->p[o->len] = '\0';
}

static void out_puts(struct out *o, const char *s)
{
    size_t n = strlen(s);
    out_reserve(o, n);
    memcpy(o->p + o->len, s, n + 1);
    o->len += n;
}

/*
 * Shortest text that reads back as the same double, spelled as Prometheus expects for the
 * specials; whole numbers below 2^53 are written without an exponent. The process never calls
 * setlocale, so "%g" writes a decimal point.
 */
static void format_double(double v, char out[32])
{
    if (isnan(v)) {
        strcpy(out, "NaN");
    } else if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
    } else if (v == trunc(v) && fabs(v) < 9007199254740992.0) {
        snprintf(out, 32, "%.0f", v);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(out, 32, "%.*g", prec, v);
            if (strtod(out, NULL) == v) {
                break;
            }
        }
    }
}

/* HELP text escapes only backslash and newline (exposition format 0.0.4). */
static void put_help(struct out *o, const char *name, const char *help, enum metric_type type)
{
    out_puts(o, "# HELP ");
    out_puts(o, name);
    out_putc(o, ' ');
    for (const char *p = help; *p != '\0'; p++) {
        if (*p == '\\') {
            out_puts(o, "\\\\");
        } else if (*p == '\n') {
            out_puts(o, "\\n");
        } else {
            out_putc(o, *p);
        }
    }
    out_puts(o, "\n# TYPE ");
    out_puts(o, name);
    out_putc(o, ' ');
    out_puts(o, type_names[type]);
    out_putc(o, '\n');
}

/* One line "name<suffix>{labels,extra} value"; no braces when there are no labels at all. */
static void put_sample(struct out *o, const char *name, const char *suffix, const char *labels,
                       const char *extra, const char *value)
{
    bool braces = labels[0] != '\0' || extra != NULL;
    out_puts(o, name);
    out_puts(o, suffix);
    if (braces) {
        out_putc(o, '{');
        out_puts(o, labels);
        if (labels[0] != '\0' && extra != NULL) {
            out_putc(o, ',');
        }
        out_puts(o, extra != NULL ? extra : "");
        out_putc(o, '}');
    }
    out_putc(o, ' ');
    out_puts(o, value);
    out_putc(o, '\n');
}

/*
 * Buckets are cumulated here from per-bucket counts, and _count is their total rather than a
 * separate atomic: an observation racing the scrape then can never make +Inf and _count differ.
 */
static void put_histogram(struct out *o, const struct family *f, const struct series *s)
{
    const struct th_histogram *h = &s->u.histogram;
    uint64_t total = 0;
    char num[32];
    char le[48];
    char value[32];

    for (size_t i = 0; i <= h->nbounds; i++) {
        total += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        if (i < h->nbounds) {
            format_double(h->bounds[i], num);
        } else {
            strcpy(num, "+Inf");
        }
        snprintf(le, sizeof(le), "le=\"%s\"", num);
        snprintf(value, sizeof(value), "%" PRIu64, total);
        put_sample(o, f->name, "_bucket", s->labels, le, value);
    }
    format_double(bits_double(atomic_load_explicit(&h->sum_bits, memory_order_relaxed)), value);
    put_sample(o, f->name, "_sum", s->labels, NULL, value);
    snprintf(value, sizeof(value), "%" PRIu64, total);
    put_sample(o, f->name, "_count", s->labels, NULL, value);
}

static void put_family(struct out *o, const struct family *f)
{
    char value[32];

    put_help(o, f->name, f->help, f->type);
    for (size_t i = 0; i < f->nseries; i++) {
        const struct series *s = f->series[i];
        if (f->type == METRIC_HISTOGRAM) {
            put_histogram(o, f, s);
            continue;
        }
        if (f->type == METRIC_COUNTER) {
            snprintf(value, sizeof(value), "%" PRIu64, th_counter_value(&s->u.counter));
        } else {
            format_double(th_gauge_value(&s->u.gauge), value);
        }
        put_sample(o, f->name, "", s->labels, NULL, value);
    }
}

/* ---- process metrics -------------------------------------------------------------------- */

static bool read_cpu_seconds(double *out)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return false;
    }
    *out = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    return true;
}

/* /proc/self/statm: "size resident shared text lib data dt", all in pages. */
static bool read_memory(double *virt, double *resident)
{
    FILE *fp = fopen("/proc/self/statm", "r");
    unsigned long size = 0;
    unsigned long rss = 0;
    long page = sysconf(_SC_PAGESIZE);
    bool ok = false;

    if (fp == NULL || page <= 0) {
        goto out;
    }
    if (fscanf(fp, "%lu %lu", &size, &rss) != 2) {
        goto out;
    }
    *virt = (double)size * (double)page;
    *resident = (double)rss * (double)page;
    ok = true;
out:
    if (fp != NULL) {
        fclose(fp);
    }
    return ok;
}

/* Entries of /proc/self/fd, less the one opendir itself holds while we count. */
static bool count_open_fds(double *out)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e = NULL;
    long self = -1;
    size_t n = 0;

    if (d == NULL) {
        return false;
    }
    self = dirfd(d);
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        if (e->d_name[0] != '.' && strtol(e->d_name, NULL, 10) != self) {
            n++;
        }
    }
    closedir(d);
    *out = (double)n;
    return true;
}

static bool read_max_fds(double *out)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return false;
    }
    *out = (double)rl.rlim_cur;
    return true;
}

/* A value that cannot be read is left out, family and all, rather than exported as 0. */
static void put_process(struct out *o, double start_time)
{
    double v[NPROCESS] = {0};
    bool ok[NPROCESS] = {false};
    char value[32];

    ok[0] = read_cpu_seconds(&v[0]);
    ok[1] = ok[2] = read_memory(&v[2], &v[1]);
    ok[3] = count_open_fds(&v[3]);
    ok[4] = read_max_fds(&v[4]);
    ok[5] = true;
    v[5] = start_time;
    for (size_t i = 0; i < NPROCESS; i++) {
        if (!ok[i]) {
            continue;
        }
        put_help(o, process_families[i].name, process_families[i].help, process_families[i].type);
        format_double(v[i], value);
        put_sample(o, process_families[i].name, "", "", NULL, value);
    }
}

/*
 * The callback runs before the registry lock is taken, so it may register and set gauges; the
 * collect lock keeps two concurrent scrapes from running it at the same time.
 */
static void run_collect(struct th_metrics *m)
{
    th_metrics_collect_cb cb = NULL;
    void *ctx = NULL;

    pthread_mutex_lock(&m->collect_lock);
    pthread_mutex_lock(&m->lock);
    cb = m->collect;
    ctx = m->collect_ctx;
    pthread_mutex_unlock(&m->lock);
    if (cb != NULL) {
        cb(ctx, m);
    }
    pthread_mutex_unlock(&m->collect_lock);
}

char *th_metrics_render(struct th_metrics *m, size_t *len)
{
    struct out o = {NULL, 0, 0};

    out_reserve(&o, 0);
    o.p[0] = '\0';
    run_collect(m);
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->nfamilies; i++) {
        put_family(&o, m->families[i]);
    }
    pthread_mutex_unlock(&m->lock);
    /* /proc is read outside the lock so updates and registrations never wait on it. */
    put_process(&o, m->start_time);
    if (len != NULL) {
        *len = o.len;
    }
    return o.p;
}

/* ---- label escaping --------------------------------------------------------------------- */

/*
 * Length of the valid UTF-8 sequence at @p s, or 0 when it is not one (overlong forms and
 * surrogates included): Prometheus rejects a whole scrape whose label value is not UTF-8.
 */
static size_t utf8_len(const unsigned char *s)
{
    size_t n = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;

    if (s[0] < 0x80) {
        return 1;
    }
    if (s[0] < 0xC2 || s[0] > 0xF4) {
        return 0;
    }
    n = s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
    lo = s[0] == 0xE0 ? 0xA0 : s[0] == 0xF0 ? 0x90 : 0x80;
    hi = s[0] == 0xED ? 0x9F : s[0] == 0xF4 ? 0x8F : 0xBF;
    if (s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return n;
}

/*
 * Writes one input unit (an escaped byte, a UTF-8 character, or U+FFFD for an invalid byte)
 * into @p rep. @return how many input bytes it consumed.
 */
static size_t escape_unit(const unsigned char *s, char rep[5], size_t *replen)
{
    size_t n = utf8_len(s);
    if (s[0] == '\\' || s[0] == '"' || s[0] == '\n') {
        rep[0] = '\\';
        rep[1] = s[0] == '\n' ? 'n' : (char)s[0];
        *replen = 2;
        return 1;
    }
    if (n == 0) {
        memcpy(rep, "\xEF\xBF\xBD", 3);
        *replen = 3;
        return 1;
    }
    memcpy(rep, s, n);
    *replen = n;
    return n;
}

char *th_metrics_escape(const char *value, char *out, size_t outlen)
{
    const unsigned char *s = (const unsigned char *)(value != NULL ? value : "");
    size_t o = 0;
    char rep[5];
    size_t replen = 0;

    if (outlen == 0) {
        return out;
    }
    /* Truncate only between units, never inside an escape or a character. */
    while (*s != '\0') {
        size_t used = escape_unit(s, rep, &replen);
        if (o + replen >= outlen) {
            break;
        }
        memcpy(out + o, rep, replen);
        o += replen;
        s += used;
    }
    out[o] = '\0';
    return out;
}
