/* postern-bench: the load generator. Parses the command line, loads the
 * script and the message pool, sets up TLS, runs (run.c) and prints the
 * report (report.c). See bench/README.md.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "body.h"
#include "postern/loop.h"
#include "postern/tls.h"
#include "report.h"
#include "run.h"
#include "script.h"

static void usage(FILE *f)
{
	fputs("usage: postern-bench [options] SCRIPT\n"
	      "  --connect H:P[,H:P...]  servers (connections rotate over them; required)\n"
	      "  --threads N             loops/threads (default 1)\n"
	      "  --conns N               concurrent connections (default 1)\n"
	      "  --mode closed|open|idle (default closed)\n"
	      "  --rate R                open loop: units per second over all threads\n"
	      "  --duration S            seconds recorded (default 10; 0 with --count)\n"
	      "  --warmup S              seconds run before recording (default 0)\n"
	      "  --count N               stop after N units\n"
	      "  --drain S               at the end, let sessions finish for S s (default 2)\n"
	      "  --users A-B             user numbers (default 0-999)\n"
	      "  --user-pattern P        user names, one %d (default u%04d@bench.test)\n"
	      "  --password P            %p (default pass)\n"
	      "  --tls implicit|starttls TLS from the first byte, or for `starttls` steps\n"
	      "  --tls-ca FILE           verify the server against FILE (default: no check)\n"
	      "  --sni NAME              TLS server name\n"
	      "  --timeout MS            connect and reply timeout (default 10000)\n"
	      "  --message-size N|A-B    override the script's message sizes\n"
	      "  --message-file F        override: send F as every message\n"
	      "  --pids P[,P...]         idle: server processes to measure (with children)\n"
	      "  --hold S                idle: seconds to hold after measuring (default 1)\n"
	      "  --settle S              idle: seconds between all held and measuring (default 1)\n"
	      "  --connect-burst N       idle: connects in flight per thread (default 64)\n"
	      "  --json FILE             write the JSON report to FILE (- = stdout)\n"
	      "  --series MS             JSON: completed/failed units per MS-ms bucket\n"
	      "  --tag TEXT              copied into the JSON report\n"
	      "  --quiet                 no text report\n"
	      "Script format: bench/script.h; examples: bench/scripts/.\n",
	      f);
}

static int parse_double(const char *s, double *v_r)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < 0 || v > 1e9)
		return -1;
	*v_r = v;
	return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *v_r)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v > max || s[0] == '-')
		return -1;
	*v_r = v;
	return 0;
}

static int parse_targets(struct bn_config *cfg, const char *list)
{
	char *copy = strdup(list), *save = NULL;
	if (copy == NULL)
		return -1;
	for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		if (cfg->ntargets == BN_MAX_TARGETS ||
		    pn_parse_hostport(t, &cfg->targets[cfg->ntargets],
				      &cfg->target_lens[cfg->ntargets]) < 0) {
			free(copy);
			return -1;
		}
		cfg->ntargets++;
	}
	free(copy);
	return cfg->ntargets > 0 ? 0 : -1;
}

static int parse_pids(struct bn_config *cfg, const char *list)
{
	char *copy = strdup(list), *save = NULL;
	if (copy == NULL)
		return -1;
	for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		unsigned long v;
		if (cfg->npids == BN_MAX_PIDS || parse_uint(t, 4194304, &v) < 0 || v == 0) {
			free(copy);
			return -1;
		}
		cfg->pids[cfg->npids++] = (pid_t)v;
	}
	free(copy);
	return 0;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

enum {
	O_CONNECT = 256, O_THREADS, O_CONNS, O_MODE, O_RATE, O_DURATION, O_WARMUP, O_COUNT,
	O_DRAIN, O_USERS, O_USER_PATTERN, O_PASSWORD, O_TLS, O_TLS_CA, O_SNI, O_TIMEOUT,
	O_MSG_SIZE, O_MSG_FILE, O_PIDS, O_HOLD, O_SETTLE, O_BURST, O_JSON, O_TAG, O_QUIET,
	O_SERIES, O_HELP,
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "connect", required_argument, NULL, O_CONNECT },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "conns", required_argument, NULL, O_CONNS },
		{ "mode", required_argument, NULL, O_MODE },
		{ "rate", required_argument, NULL, O_RATE },
		{ "duration", required_argument, NULL, O_DURATION },
		{ "warmup", required_argument, NULL, O_WARMUP },
		{ "count", required_argument, NULL, O_COUNT },
		{ "drain", required_argument, NULL, O_DRAIN },
		{ "users", required_argument, NULL, O_USERS },
		{ "user-pattern", required_argument, NULL, O_USER_PATTERN },
		{ "password", required_argument, NULL, O_PASSWORD },
		{ "tls", required_argument, NULL, O_TLS },
		{ "tls-ca", required_argument, NULL, O_TLS_CA },
		{ "sni", required_argument, NULL, O_SNI },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "message-size", required_argument, NULL, O_MSG_SIZE },
		{ "message-file", required_argument, NULL, O_MSG_FILE },
		{ "pids", required_argument, NULL, O_PIDS },
		{ "hold", required_argument, NULL, O_HOLD },
		{ "settle", required_argument, NULL, O_SETTLE },
		{ "connect-burst", required_argument, NULL, O_BURST },
		{ "json", required_argument, NULL, O_JSON },
		{ "series", required_argument, NULL, O_SERIES },
		{ "tag", required_argument, NULL, O_TAG },
		{ "quiet", no_argument, NULL, O_QUIET },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct bn_config cfg;
	struct bn_report_meta meta = { NULL, NULL };
	const char *json = NULL, *tls_mode = NULL, *tls_ca = NULL, *msg_size = NULL,
		   *msg_file = NULL;
	bool quiet = false;
	unsigned long v;
	int opt;

	memset(&cfg, 0, sizeof(cfg));
	cfg.threads = 1;
	cfg.conns = 1;
	cfg.duration_s = 10;
	cfg.drain_s = 2;
	cfg.user_pattern = "u%04d@bench.test";
	cfg.user_first = 0;
	cfg.user_last = 999;
	cfg.password = "pass";
	cfg.timeout_ms = 10000;
	cfg.hold_s = 1;
	cfg.settle_s = 1;
	cfg.connect_burst = 64;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		bool bad = false;
		switch (opt) {
		case O_CONNECT:
			meta.target = optarg;
			bad = parse_targets(&cfg, optarg) < 0;
			break;
		case O_THREADS:
			bad = parse_uint(optarg, 256, &v) < 0 || v == 0;
			cfg.threads = (unsigned int)v;
			break;
		case O_CONNS:
			bad = parse_uint(optarg, 1000000, &v) < 0 || v == 0;
			cfg.conns = (unsigned int)v;
			break;
		case O_MODE:
			if (strcmp(optarg, "closed") == 0)
				cfg.mode = BN_MODE_CLOSED;
			else if (strcmp(optarg, "open") == 0)
				cfg.mode = BN_MODE_OPEN;
			else if (strcmp(optarg, "idle") == 0)
				cfg.mode = BN_MODE_IDLE;
			else
				bad = true;
			break;
		case O_RATE: bad = parse_double(optarg, &cfg.rate) < 0; break;
		case O_DURATION: bad = parse_double(optarg, &cfg.duration_s) < 0; break;
		case O_WARMUP: bad = parse_double(optarg, &cfg.warmup_s) < 0; break;
		case O_DRAIN: bad = parse_double(optarg, &cfg.drain_s) < 0; break;
		case O_HOLD: bad = parse_double(optarg, &cfg.hold_s) < 0; break;
		case O_SETTLE: bad = parse_double(optarg, &cfg.settle_s) < 0; break;
		case O_COUNT:
			bad = parse_uint(optarg, 1000000000000ul, &v) < 0;
			cfg.count = v;
			break;
		case O_USERS: {
			char *dash = strchr(optarg, '-');
			unsigned long a, b;
			if (dash == NULL) {
				bad = true;
				break;
			}
			*dash = '\0';
			bad = parse_uint(optarg, 99999999, &a) < 0 || parse_uint(dash + 1, 99999999, &b) < 0 ||
			      a > b;
			if (!bad) {
				cfg.user_first = (unsigned int)a;
				cfg.user_last = (unsigned int)b;
			}
			break;
		}
		case O_USER_PATTERN:
			cfg.user_pattern = optarg;
			bad = bn_check_user_pattern(optarg) < 0;
			break;
		case O_PASSWORD: cfg.password = optarg; break;
		case O_TLS:
			tls_mode = optarg;
			bad = strcmp(optarg, "implicit") != 0 && strcmp(optarg, "starttls") != 0 &&
			      strcmp(optarg, "off") != 0;
			break;
		case O_TLS_CA: tls_ca = optarg; break;
		case O_SNI: cfg.tls_server_name = optarg; break;
		case O_TIMEOUT:
			bad = parse_uint(optarg, 3600000, &v) < 0 || v == 0;
			cfg.timeout_ms = (unsigned int)v;
			break;
		case O_MSG_SIZE: msg_size = optarg; break;
		case O_MSG_FILE: msg_file = optarg; break;
		case O_PIDS: bad = parse_pids(&cfg, optarg) < 0; break;
		case O_BURST:
			bad = parse_uint(optarg, 100000, &v) < 0 || v == 0;
			cfg.connect_burst = (unsigned int)v;
			break;
		case O_JSON: json = optarg; break;
		case O_SERIES:
			bad = parse_uint(optarg, 60000, &v) < 0 || v == 0;
			cfg.series_bucket_ns = v * 1000000u;
			break;
		case O_TAG: meta.tag = optarg; break;
		case O_QUIET: quiet = true; break;
		case O_HELP: case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (bad) {
			fprintf(stderr, "postern-bench: bad value for --%s: %s\n",
				opts[opt - O_CONNECT].name, optarg);
			return 2;
		}
	}
	if (optind != argc - 1 || cfg.ntargets == 0) {
		usage(stderr);
		return 2;
	}
	if (cfg.mode == BN_MODE_OPEN && cfg.rate <= 0) {
		fprintf(stderr, "postern-bench: --mode open needs --rate\n");
		return 2;
	}
	if (cfg.duration_s == 0 && cfg.count == 0 && cfg.mode != BN_MODE_IDLE) {
		fprintf(stderr, "postern-bench: --duration 0 needs --count\n");
		return 2;
	}
	if (cfg.series_bucket_ns > 0 && (cfg.duration_s == 0 || cfg.mode == BN_MODE_IDLE)) {
		fprintf(stderr, "postern-bench: --series needs --duration (not idle mode)\n");
		return 2;
	}
	if (cfg.threads > cfg.conns)
		cfg.threads = cfg.conns;

	const char *err;
	struct bn_script *script = bn_script_load(argv[optind], &err);
	if (script == NULL) {
		fprintf(stderr, "postern-bench: %s\n", err);
		return 2;
	}
	if (cfg.mode == BN_MODE_IDLE && !script->has_hold)
		fprintf(stderr, "postern-bench: warning: idle mode and the script has no `hold`\n");
	if (msg_size != NULL || msg_file != NULL) {
		/* replace the script's message spec */
		char line[512];
		snprintf(line, sizeof(line), "message %s%s\nbody\n", msg_file != NULL ? "file=" : "size=",
			 msg_file != NULL ? msg_file : msg_size);
		struct bn_script *tmp = bn_script_parse(line, strlen(line), "override", &err);
		if (tmp == NULL) {
			fprintf(stderr, "postern-bench: --message-*: %s\n", err);
			bn_script_free(&script);
			return 2;
		}
		free(script->message.file);
		script->message = tmp->message;
		tmp->message.file = NULL;
		bn_script_free(&tmp);
	}
	struct bn_bodies bodies;
	if (bn_bodies_make(&bodies, &script->message, &err) < 0) {
		fprintf(stderr, "postern-bench: message: %s\n", err);
		bn_script_free(&script);
		return 2;
	}
	cfg.script = script;
	cfg.bodies = &bodies;

	struct pn_tls_ctx *tls = NULL;
	if (tls_mode != NULL && strcmp(tls_mode, "off") != 0) {
		struct pn_tls_settings ts;
		memset(&ts, 0, sizeof(ts));
		ts.ca_file = tls_ca;
		ts.verify_peer = tls_ca != NULL;
		tls = pn_tls_ctx_new_client(&ts, &err);
		if (tls == NULL) {
			fprintf(stderr, "postern-bench: TLS: %s\n", err);
			bn_bodies_free(&bodies);
			bn_script_free(&script);
			return 2;
		}
		cfg.tls = tls;
		cfg.tls_implicit = strcmp(tls_mode, "implicit") == 0;
	}

	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	struct bn_results *res = malloc(sizeof(*res));
	int rc = res == NULL ? -1 : bn_run(&cfg, res, &err);
	if (res == NULL)
		err = "out of memory";
	if (rc < 0) {
		fprintf(stderr, "postern-bench: %s\n", err);
	} else {
		if (!quiet)
			bn_report_text(stdout, &cfg, res, &meta);
		if (json != NULL) {
			FILE *f = strcmp(json, "-") == 0 ? stdout : fopen(json, "w");
			if (f == NULL) {
				fprintf(stderr, "postern-bench: %s: %s\n", json, strerror(errno));
				rc = -1;
			} else {
				bn_report_json(f, &cfg, res, &meta);
				if (f != stdout && fclose(f) != 0)
					rc = -1;
			}
		}
	}
	if (res != NULL)
		bn_results_free(res);
	free(res);
	pn_tls_ctx_free(&tls);
	bn_bodies_free(&bodies);
	bn_script_free(&script);
	return rc < 0 ? 1 : 0;
}
