#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The bash completion (`p11kms completion bash`, installed from the build) against the
# CLI: every command `p11kms help` lists, every --option a command's --help shows, and
# every long option in the sources' getopt tables must be offered. Fails when a command
# or an option is added without reaching the completion (the drift it exists to stop).
. "$(dirname "$0")/lib-cli.sh"
SRC=${P11KMS_SOURCE_DIR:?}

run 0 completion bash
printf '%s\n' "$OUT" >p11kms.bash
bash -n p11kms.bash || fail "the completion script does not parse"
# The build writes the same script for `cmake --install` (cmake/P11kmsInstall.cmake).
built=${P11KMS_BINARY_DIR:?}/completion/p11kms
[ -f "$built" ] || fail "the build did not write $built"
cmp -s p11kms.bash "$built" || fail "$built differs from \`p11kms completion bash\`"
run 2 completion
run 2 completion zsh
has "bash only"

# complete WORDS...: COMPREPLY for the last word, as bash would ask for it, one per line.
complete_words() {
	bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _p11kms
		printf "%s\n" "${COMPREPLY[@]}"' _ "$TMP/p11kms.bash" "$@"
}
offers() { # offers WANTED WORDS...
	local want=$1 got
	shift
	got=$(complete_words "$@")
	grep -qxF -- "$want" <<<"$got" ||
		fail "completing '$*' does not offer '$want' (got: $(tr '\n' ' ' <<<"$got"))"
}

# 1. Commands: those of `p11kms help`.
run 0 help
cmds=$(sed -n 's/^  \([a-z][a-z0-9-]*\)  *[A-Z].*/\1/p' <<<"$OUT")
[ "$(wc -w <<<"$cmds")" -ge 10 ] || fail "could not read the command list from help: $OUT"
for c in $cmds; do
	offers "$c" p11kms ""
done

# 2. Options: each --option in a command's --help must be offered after that command.
n=0
for c in $cmds; do
	run 0 "$c" --help
	for o in $(grep -oE -- '--[a-z][a-z0-9-]*' <<<"$OUT" | sort -u); do
		offers "$o" p11kms "$c" --
		n=$((n + 1))
	done
done
[ $n -ge 30 ] || fail "only $n options found in the --help texts"

# 3. Sources: every getopt long-option table entry is in the script, and no command
#    parses with a table of its own that the completion cannot see.
for f in "$SRC"/src/cli/*.c "$SRC"/src/daemon/*.c; do
	if grep -q 'static const struct option' "$f"; then
		fail "$f: a function-local option table; make it a cmd_*_options table (cmd.h)"
	fi
	for o in $(sed -n 's/^[[:space:]]*{ "\([a-z][a-z0-9-]*\)", \(no\|required\|optional\)_argument.*/\1/p' "$f"); do
		grep -qE -- "--$o( |\")" p11kms.bash || fail "$f: --$o is not in the completion"
	done
done

# 4. Verbs, values and files.
offers show p11kms state ""
offers export p11kms state --chain x ""
offers list p11kms keys -c /etc/p11kms/p11kms.conf ""
offers cometbft p11kms state --format ""
offers cometbft p11kms state --format=co
offers cometbft p11kms state --format = co      # '=' in COMP_WORDBREAKS: three words
offers import p11kms state --format = tmkms ""
offers precommit p11kms state --step p
offers haqq_11235-1 p11kms init --chain ""
offers v0.38 p11kms init --protocol ""
offers doctor p11kms help d
offers bash p11kms completion ""
offers --version p11kms --
touch tmkms.toml
offers tmkms.toml p11kms migrate tm
offers tmkms.toml p11kms doctor --config tm
[ -z "$(complete_words p11kms state --chain "")" ] || fail "--chain should offer nothing (a chain id)"
echo "ok: $(wc -w <<<"$cmds") commands and $n --help options offered by the completion"
