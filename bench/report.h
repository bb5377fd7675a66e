/* Reports of the load generator: a text table for people and a JSON
 * document for bench/compare (schema in bench/README.md).
 */
#ifndef POSTERN_BENCH_REPORT_H
#define POSTERN_BENCH_REPORT_H

#include <stdio.h>

#include "run.h"

struct bn_report_meta {
	const char *target;	/* as given on the command line */
	const char *tag;	/* free text (--tag), may be NULL */
};

void bn_report_text(FILE *f, const struct bn_config *cfg, const struct bn_results *res,
		    const struct bn_report_meta *meta);
void bn_report_json(FILE *f, const struct bn_config *cfg, const struct bn_results *res,
		    const struct bn_report_meta *meta);
/* Writes s as a JSON string (quotes included). */
void bn_json_string(FILE *f, const char *s);

#endif
