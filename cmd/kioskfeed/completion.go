package main

// This file owns "kioskfeed completion bash|zsh|fish": shell completion scripts made
// from the command table (run.go's subcommands). The flags of each command are read
// from its own --help, run in this process with no environment, so a command (or a
// flag) added to the table is completed without editing a script. The scripts are
// static: completing never runs kioskfeed.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// completionNode is one place on the command line: the words typed to reach it
// ("kioskfeed admin token"), the words that may come next, and the flags it takes.
type completionNode struct {
	path  string
	words []string
	flags []completionFlag
}

type completionFlag struct {
	name  string // without dashes; offered as --name
	value bool   // takes a value (the next word is not a command)
	usage string // the first line of its help
}

// safeWord is what a word or a flag name may be to go into a script unquoted.
var safeWord = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

// completionTree walks the command table: the root, each command, and each command's
// words ("admin token create" makes "admin token" and "admin token create").
func completionTree(cmds []subcommand) []completionNode {
	const root = "kioskfeed"
	nodes := map[string]*completionNode{root: {path: root, flags: []completionFlag{{name: "version", usage: "print the version"}, {name: "help", usage: "print the commands"}}}}
	node := func(path string) *completionNode {
		if nodes[path] == nil {
			nodes[path] = &completionNode{path: path}
		}
		return nodes[path]
	}
	addWord := func(parent, w string) {
		n := node(parent)
		if !slices.Contains(n.words, w) {
			n.words = append(n.words, w)
		}
	}
	for _, sc := range cmds {
		if sc.hidden || !safeWord.MatchString(sc.name) {
			continue
		}
		path := root + " " + sc.name
		addWord(root, sc.name)
		node(path).flags = helpFlags(sc.run, nil)
		if sc.words == nil {
			continue
		}
		for _, w := range sc.words() {
			parts := strings.Fields(w)
			if len(parts) == 0 || slices.ContainsFunc(parts, func(p string) bool { return !safeWord.MatchString(p) }) {
				continue
			}
			at := path
			for _, p := range parts {
				addWord(at, p)
				at += " " + p
			}
			node(at).flags = helpFlags(sc.run, parts)
		}
	}
	out := make([]completionNode, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b completionNode) int { return strings.Compare(a.path, b.path) })
	return out
}

// defaultLine is a flag in flag.PrintDefaults: "  -name type" (type absent for a bool),
// then its usage on the next line, or on the same line after a tab for a short name.
var defaultLine = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9_.-]*)(?: ([^\t ]+))?(?:\t(.*))?$`)

// helpFlags runs a command with words and --help, in this process, with no
// environment and a background context (a --help parses and returns before doing
// anything), and reads the flags its flag set printed.
func helpFlags(run cmdFunc, words []string) []completionFlag {
	var out bytes.Buffer
	noEnv := func(string) (string, bool) { return "", false }
	err := run(context.Background(), append(slices.Clone(words), "--help"), noEnv, &out, &out)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		var u usageError
		if !errors.As(err, &u) {
			return nil
		}
	}
	var flags []completionFlag
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		if m := defaultLine.FindStringSubmatch(line); m != nil {
			if m[1] == "help" || m[1] == "h" || !safeWord.MatchString(m[1]) {
				continue
			}
			flags = append(flags, completionFlag{name: m[1], value: m[2] != "", usage: m[3]})
		} else if n := len(flags); n > 0 && flags[n-1].usage == "" && strings.HasPrefix(line, "    \t") {
			flags[n-1].usage = strings.TrimPrefix(line, "    \t")
		}
	}
	return flags
}

func completionCmd(_ context.Context, args []string, _ func(string) (string, bool), stdout, stderr io.Writer) error {
	const use = "usage: kioskfeed completion bash|zsh|fish"
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(stdout, use)
		return nil
	}
	if len(args) != 1 {
		return usageError{use}
	}
	nodes := completionTree(subcommands())
	switch args[0] {
	case "bash":
		_, err := io.WriteString(stdout, bashCompletion(nodes))
		return err
	case "zsh":
		_, err := io.WriteString(stdout, zshCompletion(nodes))
		return err
	case "fish":
		_, err := io.WriteString(stdout, fishCompletion(nodes))
		return err
	}
	return usageError{fmt.Sprintf("%s (not %q)", use, args[0])}
}

// flagNames lists n's flags as --name, the ones that take a value alone if values.
func (n completionNode) flagNames(values bool) string {
	var s []string
	for _, f := range n.flags {
		if !values || f.value {
			s = append(s, "--"+f.name)
		}
	}
	return strings.Join(s, " ")
}

// completionTables are the tables the bash and zsh scripts carry, by path: the words
// that may follow it, its flags, and those of its flags that take a value.
var completionTables = []struct {
	name string
	get  func(completionNode) string
}{
	{"_kioskfeed_words", func(n completionNode) string { return strings.Join(n.words, " ") }},
	{"_kioskfeed_flags", func(n completionNode) string { return n.flagNames(false) }},
	{"_kioskfeed_value_flags", func(n completionNode) string { return n.flagNames(true) }},
}

// bashCompletion: _kioskfeed walks the words before the cursor (skipping the value
// after a flag that takes one) to the deepest known path, then offers that path's
// flags after a "-" and its words otherwise; nothing to offer (a flag's value, a
// device id) falls back to file names (complete -o default).
func bashCompletion(nodes []completionNode) string {
	var b strings.Builder
	b.WriteString(`# bash completion for kioskfeed, made by "kioskfeed completion bash".
# Load it in this shell:  source <(kioskfeed completion bash)
# or for every shell:     kioskfeed completion bash > ~/.local/share/bash-completion/completions/kioskfeed

`)
	table := func(fn string, get func(completionNode) string) {
		fmt.Fprintf(&b, "%s() {\n    case \"$1\" in\n", fn)
		for _, n := range nodes {
			if v := get(n); v != "" {
				fmt.Fprintf(&b, "        %q) echo %q ;;\n", n.path, v)
			}
		}
		b.WriteString("    esac\n}\n\n")
	}
	for _, tb := range completionTables {
		table(tb.name, tb.get)
	}
	b.WriteString(`_kioskfeed() {
    local cur="${COMP_WORDS[COMP_CWORD]}" path="kioskfeed" w f i skip=0
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        if ((skip)); then
            skip=0
            continue
        fi
        if [[ $w == -* ]]; then
            f="${w#-}"
            f="--${f#-}"
            if [[ $f != *=* && " $(_kioskfeed_value_flags "$path") " == *" $f "* ]]; then
                skip=1
            fi
            continue
        fi
        if [[ " $(_kioskfeed_words "$path") " == *" $w "* ]]; then
            path="$path $w"
        fi
    done
    if ((skip)); then
        return 0
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_kioskfeed_flags "$path")" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$(_kioskfeed_words "$path")" -- "$cur"))
    fi
    return 0
}

complete -o default -F _kioskfeed kioskfeed
`)
	return b.String()
}

// zshCompletion is the same walk over zsh's $words, with the tables as associative
// arrays; it works from $fpath (as the file _kioskfeed) and when sourced.
func zshCompletion(nodes []completionNode) string {
	var b strings.Builder
	b.WriteString(`#compdef kioskfeed
# zsh completion for kioskfeed, made by "kioskfeed completion zsh".
# Put it in a directory of $fpath as _kioskfeed:  kioskfeed completion zsh > ~/.zsh/completions/_kioskfeed
# or load it in this shell (after compinit):     source <(kioskfeed completion zsh)

`)
	table := func(name string, get func(completionNode) string) {
		fmt.Fprintf(&b, "typeset -gA %s\n%s=(\n", name, name)
		for _, n := range nodes {
			if v := get(n); v != "" {
				fmt.Fprintf(&b, "  '%s' '%s'\n", n.path, v)
			}
		}
		b.WriteString(")\n")
	}
	for _, tb := range completionTables {
		table(tb.name, tb.get)
	}
	b.WriteString(`
_kioskfeed() {
  local cmdpath="kioskfeed" w f i skip=0
  local -a cands
  for (( i = 2; i < CURRENT; i++ )); do
    w="${words[i]}"
    if (( skip )); then
      skip=0
      continue
    fi
    if [[ $w == -* ]]; then
      f="--${${w#-}#-}"
      if [[ $f != *=* && " ${_kioskfeed_value_flags[$cmdpath]} " == *" $f "* ]]; then
        skip=1
      fi
      continue
    fi
    if [[ " ${_kioskfeed_words[$cmdpath]} " == *" $w "* ]]; then
      cmdpath="$cmdpath $w"
    fi
  done
  if (( skip )); then
    _files
    return
  fi
  if [[ $PREFIX == -* ]]; then
    cands=(${=_kioskfeed_flags[$cmdpath]})
  else
    cands=(${=_kioskfeed_words[$cmdpath]})
  fi
  if (( ${#cands} == 0 )); then
    _files
    return
  fi
  compadd -- "${cands[@]}"
}

if [[ "${funcstack[1]}" == "_kioskfeed" ]]; then
  _kioskfeed "$@"
else
  compdef _kioskfeed kioskfeed
fi
`)
	return b.String()
}

// fishCompletion: __kioskfeed_path walks the command line as the others do, and each
// word and flag is a complete rule conditioned on that path, flags with their help.
func fishCompletion(nodes []completionNode) string {
	quote := func(s string) string {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[:i]
		}
		if len(s) > 80 {
			s = s[:77] + "..."
		}
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
	}
	var b strings.Builder
	b.WriteString(`# fish completion for kioskfeed, made by "kioskfeed completion fish".
# Install it:  kioskfeed completion fish > ~/.config/fish/completions/kioskfeed.fish

`)
	var children, valueFlags []string
	for _, n := range nodes {
		for _, w := range n.words {
			children = append(children, quote(n.path+" "+w))
		}
		for _, f := range n.flags {
			if f.value {
				valueFlags = append(valueFlags, quote(n.path+" --"+f.name))
			}
		}
	}
	fmt.Fprintf(&b, "set -g __kioskfeed_children %s\n", strings.Join(children, " "))
	fmt.Fprintf(&b, "set -g __kioskfeed_value_flags %s\n", strings.Join(valueFlags, " "))
	b.WriteString(`
function __kioskfeed_path
    set -l path kioskfeed
    set -l skip 0
    for w in (commandline -opc)[2..-1]
        if test $skip -eq 1
            set skip 0
            continue
        end
        switch $w
            case '-*'
                set -l f --(string replace -r -- '^--?' '' $w)
                if contains -- "$path $f" $__kioskfeed_value_flags
                    set skip 1
                end
            case '*'
                if contains -- "$path $w" $__kioskfeed_children
                    set path "$path $w"
                end
        end
    end
    echo $path
end

complete -c kioskfeed -f
`)
	for _, n := range nodes {
		cond := quote("test (__kioskfeed_path) = " + quote(n.path))
		for _, w := range n.words {
			fmt.Fprintf(&b, "complete -c kioskfeed -n %s -a %s\n", cond, w)
		}
		for _, f := range n.flags {
			if f.value {
				fmt.Fprintf(&b, "complete -c kioskfeed -n %s -l %s -r -F -d %s\n", cond, f.name, quote(f.usage))
			} else {
				fmt.Fprintf(&b, "complete -c kioskfeed -n %s -l %s -d %s\n", cond, f.name, quote(f.usage))
			}
		}
	}
	return b.String()
}
