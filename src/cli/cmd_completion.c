/* SPDX-License-Identifier: Apache-2.0 */
/* `p11kms completion bash`: a bash completion script written from the command table. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd_table.h"
#include "p11kms/cmd.h"

static const char usage[] =
	"Usage: p11kms completion bash\n"
	"\n"
	"Prints a bash completion script for p11kms: the commands of `p11kms help`, each\n"
	"command's options (the tables the commands parse with), their verbs, and file\n"
	"names where a command takes a file. The Debian package installs it as\n"
	"/usr/share/bash-completion/completions/p11kms; elsewhere:\n"
	"  p11kms completion bash > /etc/bash_completion.d/p11kms\n"
	"  source <(p11kms completion bash)      # this shell only\n";

/*
 * What the option tables cannot tell: the verbs a command takes as its first
 * argument, what its other arguments are, and fixed choices for option values.
 * Option values complete as file names for PATH_OPTIONS, from values where
 * listed, and not at all otherwise (chain ids, heights). A command of cli_commands
 * without an entry completes only --help (the drift test, cli_completion.sh,
 * fails on an option it does not offer).
 */
struct cli_syntax {
	const char *command;
	const struct option *options; /* NULL: --help only */
	const char *verbs;    /* choices for the first argument; "@commands": command names */
	const char *operands; /* "file" or "dir": the other arguments; NULL: none */
	const char *values;   /* "--opt=a b c|--opt2=x y"; "@presets": cli_chain_presets */
};

#define PATH_OPTIONS "--config -c --output -o --softsign --tmkms-cwd"

static const struct cli_syntax syntaxes[] = {
	{ "init", cmd_init_options, NULL, "dir",
	  "--chain=@presets|--protocol=v0.34 v0.37 v0.38 v1" },
	{ "keygen", cmd_keygen_options, NULL, NULL, NULL },
	{ "import", cmd_keygen_options, NULL, "file", NULL },
	{ "keys", cmd_keys_options, "list show", NULL, NULL },
	{ "state", cmd_state_options, "show init import export", "file",
	  "--format=auto cometbft tmkms horcrux p11kms|--step=none propose prevote precommit" },
	{ "doctor", cmd_doctor_options, NULL, NULL, NULL },
	{ "migrate", cmd_migrate_options, NULL, "file", NULL },
	{ "start", cmd_start_options, NULL, NULL, NULL },
	{ "audit", cmd_audit_options, "verify show export", "file", NULL },
	{ "ha", cmd_ha_options, "status", NULL, NULL },
	{ "completion", NULL, "bash", NULL, NULL },
	{ "help", NULL, "@commands", NULL, NULL },
};

static const struct cli_syntax *syntax_find(const char *command)
{
	for (size_t i = 0; i < sizeof(syntaxes) / sizeof(syntaxes[0]); i++)
		if (strcmp(syntaxes[i].command, command) == 0)
			return &syntaxes[i];
	return NULL;
}

/* Names go into the script unquoted: only [a-z0-9._-] is accepted. */
static int is_word(const char *s)
{
	if (s == NULL || *s == '\0')
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '.' ||
		      *s == '_' || *s == '-'))
			return 0;
	return 1;
}

static void print_commands(void)
{
	const char *sep = "";

	for (const struct cli_command *c = cli_commands; c->name != NULL; c++) {
		if (!is_word(c->name))
			continue;
		printf("%s%s", sep, c->name);
		sep = " ";
	}
}

/* opts="..." argopts="..." for one command (--help is always there). */
static void print_options(const struct option *o)
{
	int help = 0;

	printf("\t\topts=\"");
	for (; o != NULL && o->name != NULL; o++) {
		if (!is_word(o->name))
			continue;
		help |= strcmp(o->name, "help") == 0;
		printf("--%s ", o->name);
	}
	printf("%s\"\n", help ? "" : "--help");
}

/*
 * The options that take a value, so that the value is not counted as an
 * argument. A table entry's val is its short option when the command's
 * optstring has it too (-c for --config); one it does not have is only listed.
 */
static void print_argopts(const struct option *o)
{
	printf("\t\targopts=\"");
	for (; o != NULL && o->name != NULL; o++) {
		if (!is_word(o->name) || o->has_arg == no_argument)
			continue;
		printf(" --%s", o->name);
		if (o->flag == NULL &&
		    ((o->val >= 'a' && o->val <= 'z') || (o->val >= 'A' && o->val <= 'Z')))
			printf(" -%c", (char)o->val);
	}
	printf(" \"\n");
}

/* The chain ids `init --chain` knows (cli_chain_presets). */
static void print_presets(void)
{
	const char *sep = "";

	for (const struct cli_chain_preset *c = cli_chain_presets; c->chain_id != NULL; c++) {
		if (!is_word(c->chain_id))
			continue;
		printf("%s%s", sep, c->chain_id);
		sep = " ";
	}
}

/* "--opt=a b|--x=@presets" becomes case arms: --opt) choices="a b" ;; */
static void print_values(const char *values)
{
	const char *p = values;

	if (p == NULL)
		return;
	printf("\t\tcase \"$prev\" in\n");
	while (p != NULL && *p != '\0') {
		const char *eq = strchr(p, '='), *end = strchr(p, '|');
		size_t n = end ? (size_t)(end - p) : strlen(p), k;

		if (eq == NULL || (end != NULL && eq > end))
			break;
		k = (size_t)(eq - p);
		printf("\t\t%.*s) choices=\"", (int)k, p);
		if (n - k - 1 == strlen("@presets") && strncmp(eq + 1, "@presets", n - k - 1) == 0)
			print_presets();
		else
			printf("%.*s", (int)(n - k - 1), eq + 1);
		printf("\" ;;\n");
		p = end ? end + 1 : NULL;
	}
	printf("\t\tesac\n");
}

static void print_command(const struct cli_command *c)
{
	const struct cli_syntax *s = syntax_find(c->name);

	if (!is_word(c->name))
		return;
	printf("\t%s)\n", c->name);
	print_options(s ? s->options : NULL);
	print_argopts(s ? s->options : NULL);
	if (s && s->verbs && strcmp(s->verbs, "@commands") == 0) {
		printf("\t\tverbs=\"");
		print_commands();
		printf("\"\n");
	} else if (s && s->verbs) {
		printf("\t\tverbs=\"%s\"\n", s->verbs);
	}
	if (s && s->operands)
		printf("\t\toperands=%s\n", s->operands);
	print_values(s ? s->values : NULL);
	printf("\t\t;;\n");
}

static const char script_head[] =
	"# bash completion for p11kms. Generated by `p11kms completion bash` from the\n"
	"# command table and the option tables the commands parse with: do not edit.\n"
	"_p11kms()\n"
	"{\n"
	"\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}\n"
	"\tlocal cmd=${COMP_WORDS[1]} opts='' argopts=' ' verbs='' operands='' choices=''\n"
	"\tlocal i w npos=0\n"
	"\tCOMPREPLY=()\n"
	"\t# --opt=value: one word, or three when '=' breaks words (COMP_WORDBREAKS).\n"
	"\tif [[ \"$cur\" == --*=* ]]; then\n"
	"\t\tprev=${cur%%=*}\n"
	"\t\tcur=${cur#*=}\n"
	"\telif [ \"$prev\" = = ] && [ \"$COMP_CWORD\" -ge 3 ]; then\n"
	"\t\tprev=${COMP_WORDS[COMP_CWORD - 2]}\n"
	"\telif [ \"$cur\" = = ]; then\n"
	"\t\tprev=${COMP_WORDS[COMP_CWORD - 1]}\n"
	"\t\tcur=''\n"
	"\tfi\n"
	"\tif [ \"$COMP_CWORD\" -eq 1 ]; then\n"
	"\t\tcase \"$cur\" in\n"
	"\t\t-*) COMPREPLY=($(compgen -W '--help --version' -- \"$cur\")) ;;\n";

static const char script_tail[] =
	"\t*) opts='--help' ;;\n"
	"\tesac\n"
	"\tif [[ \"$argopts\" != *\" $prev \"* ]]; then\n"
	"\t\tprev=''\n"
	"\tfi\n"
	"\tif [ -n \"$prev\" ]; then\n"
	"\t\tif [ -n \"$choices\" ]; then\n"
	"\t\t\tCOMPREPLY=($(compgen -W \"$choices\" -- \"$cur\"))\n"
	"\t\telif [[ \" " PATH_OPTIONS " \" == *\" $prev \"* ]]; then\n"
	"\t\t\tcompopt -o filenames 2>/dev/null\n"
	"\t\t\tCOMPREPLY=($(compgen -f -- \"$cur\"))\n"
	"\t\tfi\n"
	"\t\treturn 0\n"
	"\tfi\n"
	"\tif [[ \"$cur\" == -* ]]; then\n"
	"\t\tCOMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
	"\t\treturn 0\n"
	"\tfi\n"
	"\t# Arguments before this one, not counting options and their values.\n"
	"\tfor ((i = 2; i < COMP_CWORD; i++)); do\n"
	"\t\tw=${COMP_WORDS[i]}\n"
	"\t\tif [ \"$w\" = = ]; then\n"
	"\t\t\ti=$((i + 1))\n"
	"\t\t\tcontinue\n"
	"\t\tfi\n"
	"\t\tif [[ \"$w\" == -* ]]; then\n"
	"\t\t\tif [[ \"$w\" != *=* && \"$argopts\" == *\" $w \"* ]]; then\n"
	"\t\t\t\ti=$((i + 1))\n"
	"\t\t\t\t[ \"${COMP_WORDS[i]}\" = = ] && i=$((i + 1))\n"
	"\t\t\tfi\n"
	"\t\t\tcontinue\n"
	"\t\tfi\n"
	"\t\tnpos=$((npos + 1))\n"
	"\tdone\n"
	"\tif [ $npos -eq 0 ] && [ -n \"$verbs\" ]; then\n"
	"\t\tCOMPREPLY=($(compgen -W \"$verbs\" -- \"$cur\"))\n"
	"\telif [ \"$operands\" = dir ]; then\n"
	"\t\tcompopt -o filenames 2>/dev/null\n"
	"\t\tCOMPREPLY=($(compgen -d -- \"$cur\"))\n"
	"\telif [ \"$operands\" = file ]; then\n"
	"\t\tcompopt -o filenames 2>/dev/null\n"
	"\t\tCOMPREPLY=($(compgen -f -- \"$cur\"))\n"
	"\tfi\n"
	"\treturn 0\n"
	"}\n"
	"complete -F _p11kms p11kms\n";

static void print_bash(void)
{
	fputs(script_head, stdout);
	printf("\t\t*) COMPREPLY=($(compgen -W '");
	print_commands();
	printf("' -- \"$cur\")) ;;\n\t\tesac\n\t\treturn 0\n\tfi\n\tcase \"$cmd\" in\n");
	for (const struct cli_command *c = cli_commands; c->name != NULL; c++)
		print_command(c);
	fputs(script_tail, stdout);
}

int cmd_completion(int argc, char **argv)
{
	if (argc > 1 && cli_is_help(argv[1])) {
		fputs(usage, stdout);
		return CMD_EXIT_OK;
	}
	if (argc != 2 || strcmp(argv[1], "bash") != 0) {
		cli_err("completion", "say which shell: `p11kms completion bash` (bash only)");
		return CMD_EXIT_USAGE;
	}
	print_bash();
	return fflush(stdout) == 0 && !ferror(stdout) ? CMD_EXIT_OK : CMD_EXIT_FAIL;
}
