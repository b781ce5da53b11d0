package main

import (
	"context"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"

	"github.com/kioskfeed/kioskfeed/config"
)

// composeFile is what deploy/compose.yaml's test reads of the Compose format.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	Hostname    string            `yaml:"hostname"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	Secrets     []struct {
		Source string `yaml:"source"`
		Target string `yaml:"target"`
	} `yaml:"secrets"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Ulimits map[string]struct {
		Soft int `yaml:"soft"`
		Hard int `yaml:"hard"`
	} `yaml:"ulimits"`
}

// interpolate resolves Compose's ${VAR:-default} and ${VAR:?message} as an operator's
// shell would with every required variable set: a default stays, a required value gets
// a sample that passes the config checks.
func interpolate(v string) string {
	return regexp.MustCompile(`\$\{(\w+)(:?[-?])([^}]*)\}`).ReplaceAllStringFunc(v, func(m string) string {
		p := regexp.MustCompile(`\$\{(\w+)(:?[-?])([^}]*)\}`).FindStringSubmatch(m)
		switch {
		case strings.HasSuffix(p[2], "-"):
			return p[3]
		case p[1] == "KIOSKFEED_PUBLIC_URL":
			return "https://kiosk.example.org"
		}
		return "compose-test-" + strings.ToLower(p[1]) // at least 16 characters
	})
}

// mountTarget is where a service mounts source (a host path or a named volume), or "".
func (s composeService) mountTarget(source string) string {
	for _, v := range s.Volumes {
		if parts := strings.Split(v, ":"); len(parts) >= 2 && parts[0] == source {
			return parts[1]
		}
	}
	return ""
}

// TestDeployComposeFile keeps deploy/compose.yaml honest without a container engine (no
// registry is reachable here to pull nats): three NATS services, each mounting its own
// deploy/nats config, whose routes name exactly the three services, with JetStream kept
// in a volume and a health check; two kioskfeed services whose effective config (the
// mounted kioskfeed.yaml under the environment the file sets) names all three NATS
// services, listens where its published port reaches, keeps its data in its own volume,
// reads the shared signing key from the secret, waits for healthy NATS and checks itself
// with `kioskfeed healthcheck`; and `kioskfeed config check` passes on that config.
func TestDeployComposeFile(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("deploy/compose.yaml: %v", err)
	}
	natsNames := []string{"nats-1", "nats-2", "nats-3"}
	kfNames := []string{"kioskfeed-1", "kioskfeed-2"}
	var names []string
	for n := range f.Services {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := append(slices.Clone(kfNames), natsNames...); !slices.Equal(names, want) {
		t.Fatalf("deploy/compose.yaml has services %v; want %v", names, want)
	}
	usedVolumes := map[string]bool{}

	for _, name := range natsNames {
		s := f.Services[name]
		if !strings.HasPrefix(s.Image, "nats:2.") || s.Hostname != name {
			t.Errorf("%s: image %q, hostname %q; want nats:2.x and hostname %s", name, s.Image, s.Hostname, name)
		}
		conf := "./nats/" + name + ".conf"
		target := s.mountTarget(conf)
		if target == "" || !slices.Contains(s.Command, target) {
			t.Fatalf("%s: mounts %s at %q, command %v; want it mounted and named by --config", name, conf, target, s.Command)
		}
		opts, err := server.ProcessConfigFile(filepath.Join("../../deploy", conf))
		if err != nil {
			t.Fatalf("%s: %v", conf, err)
		}
		var routes []string
		for _, r := range opts.Routes {
			routes = append(routes, r.Hostname())
		}
		slices.Sort(routes)
		if opts.ServerName != name || !opts.JetStream || !slices.Equal(routes, natsNames) {
			t.Errorf("%s: server_name %q, jetstream %v, routes to %v; want %s, JetStream, routes to %v", conf, opts.ServerName, opts.JetStream, routes, name, natsNames)
		}
		if vol := s.mountTarget(name); vol == "" || !strings.HasPrefix(opts.StoreDir, vol) {
			t.Errorf("%s: volume %s at %q, JetStream store_dir %q; want the store in the volume", name, name, vol, opts.StoreDir)
		}
		usedVolumes[name] = true
		if hc := strings.Join(s.Healthcheck.Test, " "); !strings.Contains(hc, "/healthz") {
			t.Errorf("%s: health check %q; want NATS's /healthz", name, hc)
		}
	}

	for _, name := range kfNames {
		s := f.Services[name]
		if !strings.Contains(s.Image, "kioskfeed") || !slices.Equal(s.Command, []string{"serve"}) {
			t.Errorf("%s: image %q, command %v; want the kioskfeed image running serve", name, s.Image, s.Command)
		}
		confTarget := s.mountTarget("./kioskfeed.yaml")
		if confTarget == "" || s.Environment[config.EnvConfigFile] != confTarget {
			t.Fatalf("%s: mounts ./kioskfeed.yaml at %q, %s=%q; want the mounted file named", name, confTarget, config.EnvConfigFile, s.Environment[config.EnvConfigFile])
		}
		environ := map[string]string{}
		for k, v := range s.Environment {
			environ[k] = interpolate(v)
		}
		environ[config.EnvConfigFile] = "../../deploy/kioskfeed.yaml" // the mounted file, from here
		cfg, err := config.Load(flag.NewFlagSet("test", flag.ContinueOnError), nil, env(environ))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s: the effective config is invalid: %v", name, err)
		}
		var hosts []string
		for _, u := range strings.Split(cfg.NATSURL, ",") {
			pu, err := url.Parse(strings.TrimSpace(u))
			if err != nil {
				t.Fatalf("%s: nats_url %q: %v", name, cfg.NATSURL, err)
			}
			hosts = append(hosts, pu.Hostname())
		}
		slices.Sort(hosts)
		if !slices.Equal(hosts, natsNames) || cfg.NATSReplicas != 3 || cfg.NATSPassword == "" || cfg.AdminToken == "" {
			t.Errorf("%s: NATS at %v, %d replicas, password set %v, admin token set %v; want all of %v, R3, both set",
				name, hosts, cfg.NATSReplicas, cfg.NATSPassword != "", cfg.AdminToken != "", natsNames)
		}
		if cfg.Listen != "0.0.0.0:8080" || len(s.Ports) != 1 || !strings.HasSuffix(s.Ports[0], ":8080") {
			t.Errorf("%s: listens on %q, publishes %v; want 0.0.0.0:8080 published", name, cfg.Listen, s.Ports)
		}
		if vol := s.mountTarget(name); vol == "" || vol != cfg.DataDir {
			t.Errorf("%s: volume %s at %q, data_dir %q; want the data dir in its own volume", name, name, vol, cfg.DataDir)
		}
		usedVolumes[name] = true
		if len(s.Secrets) != 1 || s.Secrets[0].Target != cfg.SigningKeyFile || f.Secrets[s.Secrets[0].Source].File == "" {
			t.Errorf("%s: secrets %+v, signing_key_file %q; want the shared signing key mounted there", name, s.Secrets, cfg.SigningKeyFile)
		}
		if hc := strings.Join(s.Healthcheck.Test, " "); hc != "CMD /kioskfeed healthcheck" {
			t.Errorf("%s: health check %q; want CMD /kioskfeed healthcheck", name, hc)
		}
		for _, n := range natsNames {
			if s.DependsOn[n].Condition != "service_healthy" {
				t.Errorf("%s: depends on %s with %q; want service_healthy", name, n, s.DependsOn[n].Condition)
			}
		}
		if s.Ulimits["nofile"].Soft < 16384 {
			t.Errorf("%s: nofile %+v; want room for tablet sockets", name, s.Ulimits["nofile"])
		}

		var out, errOut syncBuffer
		if err := run(context.Background(), []string{"config", "check"}, env(environ), &out, &errOut); err != nil {
			t.Errorf("%s: kioskfeed config check: %v\n%s%s", name, err, out.String(), errOut.String())
		}
	}
	for v := range f.Volumes {
		if !usedVolumes[v] {
			t.Errorf("volume %s is declared but no service keeps its data there", v)
		}
	}
	if len(f.Volumes) != len(natsNames)+len(kfNames) {
		t.Errorf("deploy/compose.yaml declares volumes %v; want one per service", f.Volumes)
	}
}
