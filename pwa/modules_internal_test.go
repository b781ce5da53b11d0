package pwa

import (
	"errors"
	"strings"
	"testing"
)

// TestBuildModulesRewritesImports: every sibling import names the hashed file, all
// modules share the set's hash, and a change to any one module renames them all, so
// that no hashed name ever serves two different bodies.
func TestBuildModulesRewritesImports(t *testing.T) {
	sources := map[string][]byte{
		"app.js": []byte("import { a } from './a.js';\nimport './b.js';\nexport { c } from \"./c.js\";\n"),
		"a.js":   []byte("import {\n  b,\n} from './b.js';\nexport const a = 1;\n"),
		"b.js":   []byte("import { a } from './a.js';\nexport const b = 2;\n"),
		"c.js":   []byte("export const c = 3;\n"),
	}
	set, err := buildModules(sources)
	if err != nil {
		t.Fatal(err)
	}
	hash := strings.TrimSuffix(strings.TrimPrefix(set.entry, "/assets/app."), ".js")
	if len(hash) != 8 {
		t.Fatalf("entry %q, want /assets/app.<8 hex>.js", set.entry)
	}
	want := map[string]string{
		"app." + hash + ".js": "import { a } from './a." + hash + ".js';\nimport './b." + hash + ".js';\nexport { c } from \"./c." + hash + ".js\";\n",
		"a." + hash + ".js":   "import {\n  b,\n} from './b." + hash + ".js';\nexport const a = 1;\n",
		"b." + hash + ".js":   "import { a } from './a." + hash + ".js';\nexport const b = 2;\n",
		"c." + hash + ".js":   "export const c = 3;\n",
	}
	if len(set.files) != len(want) {
		t.Errorf("files %d, want %d", len(set.files), len(want))
	}
	for name, body := range want {
		if got := string(set.files[name]); got != body {
			t.Errorf("%s = %q, want %q", name, got, body)
		}
	}
	if got, want := strings.Join(set.preload, " "), "/assets/a."+hash+".js /assets/b."+hash+".js /assets/c."+hash+".js"; got != want {
		t.Errorf("preload = %s, want %s", got, want)
	}

	sources["c.js"] = []byte("export const c = 33;\n")
	again, err := buildModules(sources)
	if err != nil {
		t.Fatal(err)
	}
	if again.entry == set.entry {
		t.Errorf("c.js changed and the entry is still %s", again.entry)
	}
	for name := range again.files {
		if _, ok := set.files[name]; ok {
			t.Errorf("c.js changed and %s kept its name", name)
		}
	}
}

// TestBuildModulesRefusesWhatNeedsABuildStep: a module set that only a bundler, an
// import map or the network could resolve fails New instead of breaking on a tablet.
func TestBuildModulesRefusesWhatNeedsABuildStep(t *testing.T) {
	if _, err := buildModules(map[string][]byte{"app.js": []byte("import './x.js';"), "x.js": nil}); err != nil {
		t.Fatalf("the valid base of the cases: %v", err)
	}
	for name, app := range map[string]string{
		"bare specifier":  "import { x } from 'lodash';",
		"external URL":    "import { x } from 'https://cdn.example/x.js';",
		"scheme-relative": "import { x } from '//cdn.example/x.js';",
		"absolute path":   "import { x } from '/assets/x.js';",
		"parent":          "import { x } from '../x.js';",
		"unknown module":  "import { x } from './nope.js';",
		"dynamic import":  "import('./x.js');",
		"unreachable":     "export const y = 1;",
	} {
		t.Run(name, func(t *testing.T) {
			if name != "unreachable" {
				app = "import './x.js';\n" + app // so that only the case itself is wrong
			}
			_, err := buildModules(map[string][]byte{"app.js": []byte(app), "x.js": []byte("export const x = 1;")})
			if !errors.Is(err, errModuleGraph) {
				t.Errorf("buildModules: %v, want %v", err, errModuleGraph)
			}
		})
	}
	if _, err := buildModules(map[string][]byte{"x.js": []byte("")}); !errors.Is(err, errModuleGraph) {
		t.Errorf("no app.js: %v, want %v", err, errModuleGraph)
	}
}
