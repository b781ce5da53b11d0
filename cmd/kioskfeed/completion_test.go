package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func completionScript(t *testing.T, shell string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"completion", shell}, env(nil), &out, io.Discard); err != nil {
		t.Fatalf("completion %s: %v", shell, err)
	}
	if out.Len() == 0 {
		t.Fatalf("completion %s printed nothing", shell)
	}
	return out.String()
}

// bashComplete sources script in a real bash and calls _kioskfeed as bash would for
// the command line words, the cursor on the last one; it returns COMPREPLY.
func bashComplete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash: %v (the completion test runs the script in a real bash)", err)
	}
	file := filepath.Join(t.TempDir(), "kioskfeed.bash")
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	prog := fmt.Sprintf(`source %q
COMP_WORDS=(%s)
COMP_CWORD=%d
_kioskfeed
printf '%%s\n' "${COMPREPLY[@]}"`, file, strings.Join(quoted, " "), len(words)-1)
	cmd := exec.Command(bash, "--norc", "--noprofile", "-c", prog)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash completing %q: %v\n%s", words, err, out)
	}
	return strings.Fields(string(out))
}

// TestCompletionBash checks the bash script with bash itself: it parses (bash -n), and
// sourced, it completes a partial subcommand, a nested word, a partial flag, skips the
// value of a flag that takes one, and offers nothing (file names) for a flag's value.
func TestCompletionBash(t *testing.T) {
	script := completionScript(t, "bash")
	file := filepath.Join(t.TempDir(), "k.bash")
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", file).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"kioskfeed", "ser"}, []string{"serve"}},
		{[]string{"kioskfeed", "co"}, []string{"completion", "config"}},
		{[]string{"kioskfeed", "serve", "--list"}, []string{"--listen"}},
		{[]string{"kioskfeed", "serve", "-dem"}, nil}, // bash completes what was typed: "-dem" is no prefix of "--demo"
		{[]string{"kioskfeed", "admin", "to"}, []string{"token"}},
		{[]string{"kioskfeed", "admin", "token", ""}, []string{"create", "list", "revoke"}},
		{[]string{"kioskfeed", "admin", "--url", "http://x", "pi"}, []string{"pin"}},
		{[]string{"kioskfeed", "admin", "pin", "--js"}, []string{"--json"}},
		{[]string{"kioskfeed", "publish", "--feed", ""}, nil},
		{[]string{"kioskfeed", "publish", "--feed", "lobby", "--ki"}, []string{"--kind"}},
		{[]string{"kioskfeed", "loadtest", "--tab"}, []string{"--tablets"}},
		{[]string{"kioskfeed", "loadtest", "plot", "--"}, nil}, // checked below: plot's own flags
		{[]string{"kioskfeed", "version", "--"}, []string{"--json"}},
		{[]string{"kioskfeed", "config", "check", "--nats-sync"}, []string{"--nats-sync-always"}},
		{[]string{"kioskfeed", "healthcheck", "--"}, nil},
	} {
		got := bashComplete(t, script, tc.words...)
		slices.Sort(got)
		switch strings.Join(tc.words[1:], " ") {
		case "loadtest plot --":
			if len(got) == 0 || slices.Contains(got, "--tablets") {
				t.Errorf("completing %q: %q, want plot's own flags", tc.words, got)
			}
		case "healthcheck --":
			if !slices.Contains(got, "--url") || !slices.Contains(got, "--listen") {
				t.Errorf("completing %q: %q, want --url and the config flags", tc.words, got)
			}
		default:
			if !slices.Equal(got, tc.want) {
				t.Errorf("completing %q: %q, want %q", tc.words, got, tc.want)
			}
		}
	}
}

// TestCompletionFollowsTheTable: a command added to the table is completed, with its
// flags, without touching the scripts.
func TestCompletionFollowsTheTable(t *testing.T) {
	cmds := append(subcommands(), subcommand{name: "frobnicate", words: func() []string { return []string{"hard", "hard way"} },
		run: func(_ context.Context, args []string, _ func(string) (string, bool), _, stderr io.Writer) error {
			fs := flag.NewFlagSet("kioskfeed frobnicate", flag.ContinueOnError)
			fs.SetOutput(stderr)
			fs.Bool("wobble", false, "wobble while frobnicating")
			fs.String("level", "low", "how hard")
			if len(args) > 0 && args[0] == "hard" {
				fs.Bool("really", false, "only when hard")
				args = args[1:]
			}
			return fs.Parse(args)
		}})
	nodes := completionTree(cmds)
	script := bashCompletion(nodes)
	for _, tc := range []struct{ words, want []string }{
		{[]string{"kioskfeed", "frob"}, []string{"frobnicate"}},
		{[]string{"kioskfeed", "frobnicate", "--"}, []string{"--level", "--wobble"}},
		{[]string{"kioskfeed", "frobnicate", "--level", "x", "h"}, []string{"hard"}},
		{[]string{"kioskfeed", "frobnicate", "hard", "--re"}, []string{"--really"}},
		{[]string{"kioskfeed", "frobnicate", "hard", "w"}, []string{"way"}},
	} {
		if got := bashComplete(t, script, tc.words...); !slices.Equal(got, tc.want) {
			t.Errorf("completing %q: %q, want %q", tc.words, got, tc.want)
		}
	}
	for shell, s := range map[string]string{"zsh": zshCompletion(nodes), "fish": fishCompletion(nodes)} {
		for _, want := range []string{"kioskfeed frobnicate", "wobble", "really"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s script lacks %q", shell, want)
			}
		}
	}
}

// shellBlocks checks that a script's block words pair up, line by line, outside quotes
// and comments: the structure check for a shell this machine lacks.
func shellBlocks(script string, pairs map[string]string) error {
	strip := regexp.MustCompile(`'(\\.|[^'\\])*'|"(\\.|[^"\\])*"`)
	var stack []string
	closers := map[string]bool{}
	for _, c := range pairs {
		closers[c] = true
	}
	for i, line := range strings.Split(script, "\n") {
		line = strip.ReplaceAllString(line, "''")
		if j := strings.Index(line, "#"); j >= 0 && (j == 0 || line[j-1] == ' ') {
			line = line[:j]
		}
		for _, w := range strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == ';' || r == '\t' }) {
			if strings.HasSuffix(w, "=(") {
				w = "(" // an array assignment over several lines: name=(
			}
			if c, ok := pairs[w]; ok {
				stack = append(stack, c)
			} else if closers[w] {
				if len(stack) == 0 || stack[len(stack)-1] != w {
					return fmt.Errorf("line %d: %q closes nothing open (open: %q)", i+1, w, stack)
				}
				stack = stack[:len(stack)-1]
			}
		}
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed at the end: %q", stack)
	}
	return nil
}

// TestCompletionZshAndFish: each script is checked by its shell's parser when the shell
// is on this machine (zsh -n, fish --no-execute), and always by its structure: its
// blocks close, it registers the function, and it names every command of the table
// and every path's words and flags.
func TestCompletionZshAndFish(t *testing.T) {
	nodes := completionTree(subcommands())
	for _, tc := range []struct {
		shell, check string
		args         []string
		pairs        map[string]string
		musts        []string
	}{
		{"zsh", "zsh", []string{"-n"}, map[string]string{"if": "fi", "for": "done", "case": "esac", "{": "}", "(": ")"},
			[]string{"#compdef kioskfeed\n", "compdef _kioskfeed kioskfeed", "_kioskfeed() {", "typeset -gA _kioskfeed_words"}},
		{"fish", "fish", []string{"--no-execute"}, map[string]string{"function": "end", "if": "end", "for": "end", "switch": "end"},
			[]string{"function __kioskfeed_path", "complete -c kioskfeed -f\n", "commandline -opc"}},
	} {
		t.Run(tc.shell, func(t *testing.T) {
			script := completionScript(t, tc.shell)
			if bin, err := exec.LookPath(tc.check); err == nil {
				file := filepath.Join(t.TempDir(), "k."+tc.shell)
				if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command(bin, append(tc.args, file)...).CombinedOutput(); err != nil {
					t.Errorf("%s %s: %v\n%s", tc.check, strings.Join(tc.args, " "), err, out)
				}
				// And it completes: zsh's _kioskfeed with compadd printing what it is
				// given (zsh filters by $PREFIX itself), fish's complete -C.
				prog := map[string]string{
					"zsh": `compadd() { shift; print -l -- "$@"; }; _files() { print FILES; }; compdef() { :; }; source ` + file + `
words=(kioskfeed admin to); CURRENT=3; PREFIX=to; _kioskfeed
words=(kioskfeed admin --url http://x token ""); CURRENT=6; PREFIX=""; _kioskfeed
words=(kioskfeed serve --list); CURRENT=3; PREFIX=--list; _kioskfeed
words=(kioskfeed publish --feed ""); CURRENT=4; PREFIX=""; _kioskfeed`,
					"fish": `source ` + file + `; complete -C "kioskfeed admin to"; complete -C "kioskfeed admin --url http://x token "; complete -C "kioskfeed serve --list"`,
				}[tc.shell]
				flagArgs := map[string][]string{"zsh": {"-f", "-c"}, "fish": {"-N", "-c"}}[tc.shell]
				out, err := exec.Command(bin, append(flagArgs, prog)...).CombinedOutput()
				got := string(out)
				for _, want := range []string{"token", "create\nlist\nrevoke", "--listen"} {
					if err != nil || !strings.Contains(got, want) {
						t.Errorf("%s completing: %v, got\n%s\nwant %q in it", tc.shell, err, got, want)
					}
				}
				if tc.shell == "zsh" && !strings.HasSuffix(strings.TrimSpace(got), "FILES") {
					t.Errorf("zsh completing the value of --feed: %q, want file names (_files)", got)
				}
			} else {
				t.Logf("%s is not installed: the script's structure is checked, not its parse", tc.check)
			}
			if err := shellBlocks(script, tc.pairs); err != nil {
				t.Errorf("%s script: %v", tc.shell, err)
			}
			for _, m := range tc.musts {
				if !strings.Contains(script, m) {
					t.Errorf("%s script lacks %q", tc.shell, m)
				}
			}
			for _, n := range nodes {
				for _, w := range n.words {
					if tc.shell == "fish" && !strings.Contains(script, "'"+n.path+" "+w+"'") || tc.shell == "zsh" && !regexp.MustCompile(`'`+regexp.QuoteMeta(n.path)+`' '[^']*\b`+regexp.QuoteMeta(w)+`\b`).MatchString(script) {
						t.Errorf("%s script: %q does not lead to %q", tc.shell, n.path, w)
					}
				}
				for _, f := range n.flags {
					if !strings.Contains(script, "--"+f.name) && !strings.Contains(script, "-l "+f.name+" ") {
						t.Errorf("%s script: %q lacks its flag %s", tc.shell, n.path, f.name)
					}
				}
			}
		})
	}
	if err := shellBlocks("if x\nfor y\nfi\ndone\n", map[string]string{"if": "fi", "for": "done"}); err == nil {
		t.Error("shellBlocks passed crossed blocks")
	}
	if err := run(context.Background(), []string{"completion", "powershell"}, env(nil), io.Discard, io.Discard); exitCode(err) != 2 {
		t.Errorf("completion powershell: %v, want a usage error", err)
	}
}

// TestAdminCommandsMatchUsage keeps adminCommands (what completion offers after
// "kioskfeed admin") and adminUsage alike, and each command one adminCmd knows.
func TestAdminCommandsMatchUsage(t *testing.T) {
	usageFirst := map[string]string{}
	for _, line := range strings.Split(adminUsage, "\n") {
		if m := regexp.MustCompile(`^  ([a-z][a-z-]*)\b(.*)`).FindStringSubmatch(line); m != nil {
			usageFirst[m[1]] = m[2]
		}
	}
	seen := map[string]bool{}
	for _, c := range adminCommands() {
		parts := strings.Fields(c)
		seen[parts[0]] = true
		rest, ok := usageFirst[parts[0]]
		if !ok {
			t.Errorf("admin command %q is not in adminUsage", c)
		}
		if len(parts) > 1 && !regexp.MustCompile(`\b`+parts[1]+`\b`).MatchString(rest) {
			t.Errorf("admin command %q: adminUsage's line %q does not name %q", c, rest, parts[1])
		}
		args := append(parts, "--token", "0123456789abcdef0123", "--url", "http://127.0.0.1:1")
		if err := run(context.Background(), append([]string{"admin"}, args...), env(nil), io.Discard, io.Discard); err != nil && strings.Contains(err.Error(), "unknown admin command") {
			t.Errorf("admin %s: %v", c, err)
		}
	}
	for w := range usageFirst {
		if !seen[w] {
			t.Errorf("adminUsage lists %q, which adminCommands lacks", w)
		}
	}
}
