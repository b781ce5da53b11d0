package pwa

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// The app's script is plain ES modules (static/*.js) that import each other by
// relative URL, as './socket.js'. Served under hashed names like every other asset, a
// module that kept './socket.js' would make the browser fetch an unhashed name, which is
// a 404; so New rewrites every import specifier to the hashed name it serves.
//
// All modules of a build carry one hash, that of every module source together. A hash
// per file cannot work here: the imports form cycles (pairing adopts a device and
// connects; the socket forgets a revoked device and shows pairing), so a file's hash
// could not cover the hashed names of the files it imports. The set's hash can, and the
// bytes under a hashed name still never change, because they follow from the sources
// that the hash covers. A change to any module renames them all, which costs a tablet
// one download of some 30 KB per build; the service worker fetches the whole shell
// again at a new build anyway.

// entryModule is the module the page loads; every other module must be reachable from
// it through imports, so nothing is served that the app never runs.
const entryModule = "app.js"

var (
	// moduleSpecifier finds the specifier of a static import (import './x.js',
	// import {a} from './x.js') or re-export (export {a} from './x.js').
	moduleSpecifier = regexp.MustCompile(`\b(?:import|from)\s*['"]([^'"\r\n]*)['"]`)
	dynamicImport   = regexp.MustCompile(`\bimport\s*\(`)
	// relativeModule is the only specifier allowed: a sibling module. Anything else
	// (a bare name, an absolute or external URL) needs an import map or the network.
	relativeModule = regexp.MustCompile(`^\./([a-z0-9-]+\.js)$`)
)

// errModuleGraph is what a malformed set of modules fails New with.
var errModuleGraph = errors.New("pwa: app modules")

// moduleSet is the app's modules as served.
type moduleSet struct {
	files   map[string][]byte // hashed name (as under /assets/) → source with rewritten imports
	entry   string            // URL of the entry module
	preload []string          // URLs of the other modules, in the order they are first imported
}

// buildModules names sources (file name → source) with the set's hash and rewrites
// their imports to those names. It refuses a module set whose imports it cannot
// resolve without a build step: a specifier that is not a sibling module, a dynamic
// import, an unknown module, or a module the entry never reaches.
func buildModules(sources map[string][]byte) (moduleSet, error) {
	if _, ok := sources[entryModule]; !ok {
		return moduleSet{}, fmt.Errorf("%w: no static/%s", errModuleGraph, entryModule)
	}
	names := make([]string, 0, len(sources))
	for name := range sources {
		names = append(names, name)
	}
	slices.Sort(names)
	sum := sha256.New()
	for _, name := range names {
		fmt.Fprintf(sum, "%s %d\n", name, len(sources[name]))
		sum.Write(sources[name])
	}
	hash := fmt.Sprintf("%x", sum.Sum(nil)[:4])
	hashed := func(name string) string { return strings.TrimSuffix(name, ".js") + "." + hash + ".js" }

	set := moduleSet{files: map[string][]byte{}, entry: "/assets/" + hashed(entryModule)}
	imports := map[string][]string{}
	for _, name := range names {
		src := sources[name]
		if dynamicImport.Match(src) {
			return moduleSet{}, fmt.Errorf("%w: %s has a dynamic import(), which the hashed names cannot follow", errModuleGraph, name)
		}
		var out []byte
		last := 0
		for _, m := range moduleSpecifier.FindAllSubmatchIndex(src, -1) {
			spec := string(src[m[2]:m[3]])
			dep := relativeModule.FindStringSubmatch(spec)
			if dep == nil {
				return moduleSet{}, fmt.Errorf("%w: %s imports %q; only a sibling module './name.js' resolves without a build step", errModuleGraph, name, spec)
			}
			if _, ok := sources[dep[1]]; !ok {
				return moduleSet{}, fmt.Errorf("%w: %s imports %s, which is not in static/", errModuleGraph, name, dep[1])
			}
			imports[name] = append(imports[name], dep[1])
			out = append(out, src[last:m[2]]...)
			out = append(out, "./"+hashed(dep[1])...)
			last = m[3]
		}
		set.files[hashed(name)] = append(out, src[last:]...)
	}

	// Breadth first from the entry: the preload order is the order the browser would
	// discover the modules in.
	seen := map[string]bool{entryModule: true}
	for queue := []string{entryModule}; len(queue) > 0; queue = queue[1:] {
		for _, dep := range imports[queue[0]] {
			if !seen[dep] {
				seen[dep] = true
				queue = append(queue, dep)
				set.preload = append(set.preload, "/assets/"+hashed(dep))
			}
		}
	}
	for _, name := range names {
		if !seen[name] {
			return moduleSet{}, fmt.Errorf("%w: %s is imported by nothing that %s reaches", errModuleGraph, name, entryModule)
		}
	}
	return set, nil
}
