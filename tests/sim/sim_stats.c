/* SPDX-License-Identifier: Apache-2.0 */
/* Counters and latency percentiles shared by the simulator's connection threads. */
#include "sim.h"

#include <jansson.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sim_stats_init(struct sim_stats *s)
{
	memset(s, 0, sizeof(*s));
	(void)pthread_mutex_init(&s->mu, NULL);
}

void sim_stats_free(struct sim_stats *s)
{
	free(s->lat_ms);
	s->lat_ms = NULL;
	(void)pthread_mutex_destroy(&s->mu);
}

/* Caller holds s->mu. */
void sim_stats_latency(struct sim_stats *s, double ms)
{
	if (s->n_lat == s->cap_lat) {
		size_t cap = s->cap_lat ? s->cap_lat * 2 : 1024;
		double *p = realloc(s->lat_ms, cap * sizeof(*p));
		if (p == NULL)
			return; /* the percentile loses a sample; counters stay right */
		s->lat_ms = p;
		s->cap_lat = cap;
	}
	s->lat_ms[s->n_lat++] = ms;
}

/* Caller holds s->mu. Keeps the first failure's text for the summary. */
void sim_stats_fail(struct sim_stats *s, const char *fmt, ...)
{
	va_list ap;
	s->failures++;
	if (s->first_failure[0] != '\0')
		return;
	va_start(ap, fmt);
	(void)vsnprintf(s->first_failure, sizeof(s->first_failure), fmt, ap);
	va_end(ap);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double sim_stats_pct(struct sim_stats *s, double p)
{
	size_t i;
	if (s->n_lat == 0)
		return 0.0;
	qsort(s->lat_ms, s->n_lat, sizeof(double), cmp_double);
	/* nearest rank */
	i = (size_t)((p / 100.0) * (double)s->n_lat + 0.999999);
	if (i == 0)
		i = 1;
	if (i > s->n_lat)
		i = s->n_lat;
	return s->lat_ms[i - 1];
}

double sim_stats_max(const struct sim_stats *s)
{
	double m = 0.0;
	for (size_t i = 0; i < s->n_lat; i++)
		if (s->lat_ms[i] > m)
			m = s->lat_ms[i];
	return m;
}

void sim_json_print(json_t *j)
{
	char *txt = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

	if (txt != NULL)
		printf("%s\n", txt);
	free(txt);
	json_decref(j);
}
