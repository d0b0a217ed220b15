/* SPDX-License-Identifier: MIT */
/* main.c -- the trailhook command line: picks a subcommand and its options, nothing more. */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "trailhook/cmd.h"

static const char usage[] =
    "usage: trailhook [serve] [--config FILE] [--listen ADDR:PORT] [--state-dir DIR]\n"
    "                 [--log-level LEVEL] [--insecure-no-auth]   run the service (default)\n"
    "       trailhook test FILE.yml...          run Panther-format rule tests\n"
    "       trailhook eval [FILE...|-]          evaluate CloudTrail events offline\n"
    "       trailhook accounts add ID [--days N] | list | remove ID\n"
    "                                           manage the new-account set\n"
    "       trailhook outbox list [--dead|--pending] [--destination NAME] | retry ID | drop ID\n"
    "                                           see and act on deliveries and dead letters\n"
    "       trailhook config                    print the effective configuration\n"
    "       trailhook healthcheck [URL]         exit 0 when /healthz answers 200\n"
    "       trailhook --version | --help\n";

struct cli {
    const char *command;
    struct th_cmd_overrides ov;
    bool insecure_no_auth;
    int nargs;
    char **args; /* positional arguments after the command */
};

/* Takes the value of an option given as "--opt VALUE" or "--opt=VALUE". */
static bool option_value(int argc, char **argv, int *i, const char *name, const char **out)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) {
        return false;
    }
    if (argv[*i][n] == '=') {
        *out = argv[*i] + n + 1;
        return true;
    }
    if (argv[*i][n] == '\0' && *i + 1 < argc) {
        *out = argv[++*i];
        return true;
    }
    return false;
}

/* Options that belong to a subcommand and are passed on to it. */
static bool command_option(const char *arg)
{
    static const char *const passed[] = {"-", "--days", "--dead", "--pending", "--destination"};
    for (size_t i = 0; i < sizeof(passed) / sizeof(passed[0]); i++) {
        if (strcmp(arg, passed[i]) == 0) {
            return true;
        }
    }
    return false;
}

static bool global_option(int argc, char **argv, int *i, struct cli *cli)
{
    if (strcmp(argv[*i], "--insecure-no-auth") == 0) {
        cli->insecure_no_auth = true;
        return true;
    }
    return option_value(argc, argv, i, "--config", &cli->ov.config_path) ||
           option_value(argc, argv, i, "--listen", &cli->ov.listen) ||
           option_value(argc, argv, i, "--state-dir", &cli->ov.state_dir) ||
           option_value(argc, argv, i, "--log-level", &cli->ov.log_level);
}

/* Global options may stand anywhere; other arguments stay in order for the command. */
static bool parse(int argc, char **argv, struct cli *cli)
{
    cli->args = argv;
    for (int i = 1; i < argc; i++) {
        if (global_option(argc, argv, &i, cli)) {
            continue;
        }
        if (cli->command == NULL && argv[i][0] != '-') {
            cli->command = argv[i];
        } else if (cli->command != NULL && (argv[i][0] != '-' || command_option(argv[i]))) {
            cli->args[cli->nargs++] = argv[i];
        } else {
            fprintf(stderr, "trailhook: unknown option '%s'\n%s", argv[i], usage);
            return false;
        }
    }
    if (cli->command == NULL) {
        cli->command = "serve";
    }
    return true;
}

static int run(struct cli *cli)
{
    struct th_config cfg;
    struct th_spec_set specs = {NULL, 0};
    bool needs_specs = strcmp(cli->command, "serve") == 0 || strcmp(cli->command, "eval") == 0;
    int status = TH_EXIT_USAGE;

    memset(&cfg, 0, sizeof(cfg)); /* th_config_load fills in the defaults */
    if (strcmp(cli->command, "test") == 0) {
        status = th_cmd_test(cli->nargs, cli->args, stdout);
    } else if (!th_cmd_setup(&cli->ov, &cfg, needs_specs ? &specs : NULL)) {
        status = TH_EXIT_USAGE;
    } else if (strcmp(cli->command, "serve") == 0 && cli->nargs == 0) {
        status = th_cmd_serve(&cfg, &specs, &cli->ov, cli->insecure_no_auth);
    } else if (strcmp(cli->command, "eval") == 0) {
        status = th_cmd_eval(&cfg, &specs, cli->nargs, cli->args, stdout);
    } else if (strcmp(cli->command, "accounts") == 0) {
        status = th_cmd_accounts(&cfg, cli->nargs, cli->args, stdout);
    } else if (strcmp(cli->command, "outbox") == 0) {
        status = th_cmd_outbox(&cfg, cli->nargs, cli->args, stdout);
    } else if (strcmp(cli->command, "config") == 0 && cli->nargs == 0) {
        status = th_cmd_config(&cfg, stdout);
    } else if (strcmp(cli->command, "healthcheck") == 0 && cli->nargs <= 1) {
        status = th_cmd_healthcheck(&cfg, cli->nargs == 1 ? cli->args[0] : NULL);
    } else {
        fprintf(stderr, "trailhook: unknown command or arguments: '%s'\n%s", cli->command, usage);
    }
    th_spec_set_cleanup(&specs);
    th_config_cleanup(&cfg);
    return status;
}

int main(int argc, char **argv)
{
    struct cli cli;
    memset(&cli, 0, sizeof(cli));
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("trailhook %s\n", TH_VERSION);
        return 0;
    }
    if (!parse(argc, argv, &cli)) {
        return TH_EXIT_USAGE;
    }
    /* Once, before any thread starts (libcurl's rule). */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int status = run(&cli);
    curl_global_cleanup();
    return status;
}
