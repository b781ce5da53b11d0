package pwa_test

import (
	"bytes"
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kioskfeed/kioskfeed/pwa"
	"golang.org/x/net/html"
)

// importSpecifier finds what a module imports: import './x.js', import {a} from
// './x.js', export {a} from './x.js', and dynamic import('x').
var importSpecifier = regexp.MustCompile(`\b(?:import|from)\s*\(?\s*['"]([^'"]*)['"]`)

// externalURL is an absolute URL of a network scheme, or a scheme-relative one.
var externalURL = regexp.MustCompile(`(?i)\b(?:https?|wss?|ftp)://|['"` + "`" + `]//`)

// TestModulesResolveHashedAndImmutable follows the app's modules from the one the page
// loads, through every import: each is served 200 as JavaScript under a content-hashed
// name with immutable caching and the security headers, imports only hashed siblings
// of the same origin, and names no external URL at all, so the app needs no build step
// and no other server at run time. The page preloads exactly the modules the entry
// reaches; a module's name with another hash is a 404 in the JSON error format, as an
// old page asking for an asset of another build gets.
func TestModulesResolveHashedAndImmutable(t *testing.T) {
	srv := mustStartApp(t, pwa.Config{})
	_, index := get(t, srv, "/")
	entry, preloads := pageModules(t, index)
	if entry == "" {
		t.Fatal(`the page has no <script type="module" src>`)
	}
	hashed := regexp.MustCompile(`^/assets/([a-z0-9-]+)\.([0-9a-f]{8})\.js$`)
	base, _ := url.Parse(srv.URL)

	seen := map[string]bool{entry: true}
	queue := []string{entry}
	for len(queue) > 0 && len(seen) <= 64 { // bounded: the app has about a dozen
		u := queue[0]
		queue = queue[1:]
		m := hashed.FindStringSubmatch(u)
		if m == nil {
			t.Errorf("module URL %q is not /assets/<name>.<8 hex>.js", u)
			continue
		}
		resp, body := get(t, srv, u)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: status %d, want 200", u, resp.StatusCode)
			continue
		}
		if got, want := resp.Header.Get("Content-Type"), "text/javascript; charset=utf-8"; got != want {
			t.Errorf("GET %s: Content-Type = %q, want %q", u, got, want)
		}
		if got, want := resp.Header.Get("Cache-Control"), "public, max-age=31536000, immutable"; got != want {
			t.Errorf("GET %s: Cache-Control = %q, want %q", u, got, want)
		}
		checkSecurityHeaders(t, u, resp.Header)
		if loc := externalURL.FindIndex(body); loc != nil {
			t.Errorf("GET %s: names an external URL: …%s…", u, body[max(0, loc[0]-40):min(len(body), loc[1]+40)])
		}
		if bytes.Contains(body, []byte("import(")) {
			t.Errorf("GET %s: has a dynamic import()", u)
		}

		// A name of another build, or none: 404 in the JSON error format.
		for _, stale := range []string{"/assets/" + m[1] + ".00000000.js", "/assets/" + m[1] + ".js"} {
			if stale == u {
				continue
			}
			resp, body := get(t, srv, stale)
			var e struct{ Error, Message string }
			if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/json" ||
				json.Unmarshal(body, &e) != nil || e.Error != "not_found" || e.Message == "" {
				t.Errorf("GET %s: %d %q %s, want 404 {\"error\":\"not_found\",\"message\":…}", stale, resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
		}

		for _, sm := range importSpecifier.FindAllSubmatch(body, -1) {
			spec := string(sm[1])
			if !strings.HasPrefix(spec, "./") {
				t.Errorf("%s imports %q, want a relative './name.<hash>.js'", u, spec)
				continue
			}
			ref, err := base.Parse(u)
			if err == nil {
				ref, err = ref.Parse(spec)
			}
			if err != nil || ref.Host != base.Host || ref.Scheme != base.Scheme {
				t.Errorf("%s imports %q, which resolves to %v (%v), not to this origin", u, spec, ref, err)
				continue
			}
			if !seen[ref.Path] {
				seen[ref.Path] = true
				queue = append(queue, ref.Path)
			}
		}
	}
	if len(seen) < 8 {
		t.Errorf("the entry reaches %d modules, want the app split by concern (storage, DPoP, device, PIN, code, socket, reconnect, view, render, kiosk)", len(seen))
	}
	var reached []string
	for u := range seen {
		if u != entry {
			reached = append(reached, u)
		}
	}
	slices.Sort(reached)
	slices.Sort(preloads)
	if !slices.Equal(preloads, reached) {
		t.Errorf("the page preloads %q, want the modules the entry imports %q", preloads, reached)
	}
}

// pageModules is the src of the page's module script and the href of its module
// preloads.
func pageModules(t *testing.T, src []byte) (entry string, preloads []string) {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch {
			case n.Data == "script" && attr(n, "type") == "module":
				if entry != "" {
					t.Errorf("two module scripts: %s and %s", entry, attr(n, "src"))
				}
				entry = attr(n, "src")
			case n.Data == "link" && attr(n, "rel") == "modulepreload":
				preloads = append(preloads, attr(n, "href"))
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return entry, preloads
}
