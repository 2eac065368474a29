package e2e

// The deploy files, checked as written: there is no Docker engine or
// cluster here, so each file is parsed and what it says is checked against
// the router itself — its configuration variables and their rules
// (configs.Load), its commands (cli.Run), its probes and the least-privilege
// NATS configuration (a real nats-server).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/router/broker"
)

const (
	dockerfilePath = "../Dockerfile"
	composePath    = "../deploy/compose.yaml"
	kubernetesPath = "../deploy/kubernetes/router.yaml"
)

// goRuntimeVariables are the environment variables of the Go runtime a
// deploy file may set besides the router's own.
var goRuntimeVariables = []string{"GOGC", "GOMEMLIMIT", "GOMAXPROCS"}

// checkDeployEnv checks the variables a deploy file gives the router: each
// is one the router reads (a misspelt one would be silently ignored), a
// secret comes from where secretFrom says, the ingress and the admin API
// are reachable from outside the container, and the router accepts the
// whole configuration. It returns the configuration.
func checkDeployEnv(t *testing.T, file string, env map[string]string, secretFrom func(name string) bool) configs.Config {
	t.Helper()
	known := map[string]configs.Variable{}
	for _, v := range configs.Variables() {
		known[v.Name] = v
	}
	for name := range env {
		v, ok := known[name]
		switch {
		case !ok && !slices.Contains(goRuntimeVariables, name):
			t.Errorf("%s sets %s, which the router does not read", file, name)
		case v.Secret && !secretFrom(name):
			t.Errorf("%s gives the secret %s in the file itself; it must come from a secret", file, name)
		}
	}
	cfg, err := configs.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("%s: the router refuses its configuration: %v", file, err)
	}
	for name, addr := range map[string]string{"HTTP_ADDR": cfg.HTTPAddr, "ADMIN_ADDR": cfg.AdminAddr} {
		if !configs.Exposed(addr) {
			t.Errorf("%s: %s=%s is loopback: nothing outside the container reaches it", file, name, addr)
		}
	}
	if cfg.NATSURL == "" && configs.Exposed(cfg.NATSListen) {
		t.Errorf("%s: the embedded NATS server, which has no authentication, listens on %s", file, cfg.NATSListen)
	}
	return cfg
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

// decodeStrict decodes one YAML document into v, refusing fields v does not
// declare: a misspelt key (say, readinesProbe) fails the test instead of
// being ignored by the test and by the tool that reads the file.
func decodeStrict(t *testing.T, file string, doc []byte, v any) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ---------------------------------------------------------------------------
// Dockerfile

type dockerInstruction struct {
	Line int
	Cmd  string // upper case
	Args string
}

type dockerStage struct {
	From   string
	Name   string
	Instrs []dockerInstruction
}

// parseDockerfile reads instructions the way the builder does: comment
// lines dropped, backslash continuations joined, one instruction per line.
func parseDockerfile(t *testing.T, text string) []dockerStage {
	t.Helper()
	var stages []dockerStage
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if body, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		cur.Reset()
		in := dockerInstruction{Line: start, Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			st := dockerStage{From: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile:%d: %s before the first FROM", in.Line, in.Cmd)
		}
		stages[len(stages)-1].Instrs = append(stages[len(stages)-1].Instrs, in)
	}
	if cur.Len() > 0 {
		t.Fatal("Dockerfile ends inside a continued line")
	}
	return stages
}

// dockerWords splits ENV/LABEL/ARG arguments into key=value words,
// honouring double quotes (which it removes).
func dockerWords(s string) []string {
	var words []string
	var w strings.Builder
	quoted, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				words = append(words, w.String())
			}
			w.Reset()
			inWord = false
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

func dockerPairs(t *testing.T, in dockerInstruction) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, w := range dockerWords(in.Args) {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			t.Fatalf("Dockerfile:%d: %s %q is not key=value", in.Line, in.Cmd, w)
		}
		out[k] = v
	}
	return out
}

func execForm(t *testing.T, in dockerInstruction, args string) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("Dockerfile:%d: %s must be in exec form (a JSON array: the image has no shell), got %s", in.Line, in.Cmd, args)
	}
	return argv
}

func modulePath(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^module (\S+)$`).FindSubmatch(readFile(t, "../go.mod"))
	if m == nil {
		t.Fatal("go.mod has no module line")
	}
	return string(m[1])
}

var buildArgRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)

// dockerImage is what the Dockerfile's run stage makes of the image.
type dockerImage struct {
	stages     []dockerStage
	env        map[string]string // ENV
	args       map[string]string // ARG, with defaults
	labels     map[string]string
	exposed    []int
	copied     map[string]string // destination → source
	user       string
	entrypoint []string
	cmd        []string
	health     []string // HEALTHCHECK CMD
	healthOpts map[string]string
}

func readDockerImage(t *testing.T) dockerImage {
	t.Helper()
	img := dockerImage{
		stages: parseDockerfile(t, string(readFile(t, dockerfilePath))),
		env:    map[string]string{}, args: map[string]string{}, labels: map[string]string{},
		copied: map[string]string{}, healthOpts: map[string]string{},
	}
	if len(img.stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and a run stage", len(img.stages))
	}
	for _, in := range img.stages[len(img.stages)-1].Instrs {
		switch in.Cmd {
		case "ENV":
			maps.Copy(img.env, dockerPairs(t, in))
		case "ARG":
			maps.Copy(img.args, dockerPairs(t, in))
		case "LABEL":
			maps.Copy(img.labels, dockerPairs(t, in))
		case "EXPOSE":
			for _, p := range strings.Fields(in.Args) {
				n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
				if err != nil {
					t.Fatalf("Dockerfile:%d: EXPOSE %q", in.Line, p)
				}
				img.exposed = append(img.exposed, n)
			}
		case "COPY":
			f := strings.Fields(in.Args)
			src, dst := f[len(f)-2], f[len(f)-1]
			if strings.HasSuffix(dst, "/") {
				dst += filepath.Base(src)
			}
			img.copied[dst] = src
		case "USER":
			img.user = in.Args
		case "ENTRYPOINT":
			img.entrypoint = execForm(t, in, in.Args)
		case "CMD":
			img.cmd = execForm(t, in, in.Args)
		case "HEALTHCHECK":
			opts, argv, ok := strings.Cut(in.Args, "CMD ")
			if !ok {
				t.Fatalf("Dockerfile:%d: HEALTHCHECK without CMD", in.Line)
			}
			maps.Copy(img.healthOpts, dockerPairs(t, dockerInstruction{Line: in.Line, Cmd: in.Cmd, Args: opts}))
			img.health = execForm(t, in, argv)
		}
	}
	return img
}

func TestDeployDockerfile(t *testing.T) {
	t.Parallel()
	img := readDockerImage(t)
	stages, env, args, labels := img.stages, img.env, img.args, img.labels
	entrypoint, health := img.entrypoint, img.health
	if final := stages[len(stages)-1]; final.From != "scratch" {
		t.Errorf("the run stage is FROM %s, want scratch", final.From)
	}

	// A build argument is visible only in the stage that declares it
	// (after its ARG); elsewhere ${X} is silently empty.
	for _, st := range stages {
		declared := map[string]string{}
		for _, in := range st.Instrs {
			if in.Cmd == "ARG" || in.Cmd == "ENV" {
				maps.Copy(declared, dockerPairs(t, in))
				continue
			}
			for _, m := range buildArgRef.FindAllStringSubmatch(in.Args, -1) {
				if _, ok := declared[m[1]]; !ok {
					t.Errorf("Dockerfile:%d: %s uses ${%s}, which this stage (FROM %s) does not declare", in.Line, in.Cmd, m[1], st.From)
				}
			}
		}
	}

	// The binary: built with the version, copied, run.
	var build dockerInstruction
	for _, in := range stages[0].Instrs {
		if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
			build = in
		}
	}
	if !strings.Contains(build.Args, "CGO_ENABLED=0") {
		t.Errorf("the build is not static (CGO_ENABLED=0) for a scratch image: %s", build.Args)
	}
	checkVersionFlag(t, build.Args)
	out := regexp.MustCompile(`-o (\S+)`).FindStringSubmatch(build.Args)
	if out == nil {
		t.Fatalf("the build names no output (-o): %s", build.Args)
	}
	if len(entrypoint) != 1 || img.copied[entrypoint[0]] != out[1] {
		t.Fatalf("ENTRYPOINT %v is not the built binary %s (copied: %v)", entrypoint, out[1], img.copied)
	}
	if u, _, _ := strings.Cut(img.user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("USER %q: the router must not run as root", img.user)
	}
	if len(img.cmd) != 1 || img.cmd[0] != "serve" {
		t.Errorf("CMD %v, want [serve]", img.cmd)
	}

	// Configuration: the router starts with it once ADMIN_TOKEN is given
	// at run time, and refuses to without.
	withToken := maps.Clone(env)
	withToken["ADMIN_TOKEN"] = "from-a-secret"
	cfg := checkDeployEnv(t, dockerfilePath, withToken, func(name string) bool { return name == "ADMIN_TOKEN" && env[name] == "" })
	if _, err := configs.Load(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "ADMIN_TOKEN") {
		t.Errorf("the image's configuration without ADMIN_TOKEN: %v, want a refusal naming ADMIN_TOKEN", err)
	}
	if _, ok := env["NATS_LISTEN"]; ok && configs.Exposed(env["NATS_LISTEN"]) {
		t.Errorf("the image sets NATS_LISTEN=%s: the embedded broker, which has no authentication, beyond loopback", env["NATS_LISTEN"])
	}
	want := []int{portOf(t, cfg.HTTPAddr), portOf(t, cfg.AdminAddr)}
	slices.Sort(want)
	exposed := slices.Sorted(slices.Values(img.exposed))
	if !slices.Equal(exposed, want) {
		t.Errorf("EXPOSE %v, want the ingress and admin ports %v and nothing else (not the embedded broker's)", exposed, want)
	}

	// OCI labels, the version from the build.
	for _, k := range []string{"title", "description", "version", "revision", "created", "source"} {
		if labels["org.opencontainers.image."+k] == "" {
			t.Errorf("no label org.opencontainers.image.%s", k)
		}
	}
	if got := labels["org.opencontainers.image.version"]; got != "${VERSION}" {
		t.Errorf("label org.opencontainers.image.version = %q, want ${VERSION}, the version built in", got)
	}
	if got, want := args["SOURCE"], "https://"+modulePath(t); got != want {
		t.Errorf("ARG SOURCE=%q, want %q (go.mod's module)", got, want)
	}

	// HEALTHCHECK runs the healthcheck command of this very binary; run
	// here with the image's environment, it asks /readyz and follows the
	// answer.
	if len(health) < 2 || health[0] != entrypoint[0] || health[1] != "healthcheck" {
		t.Fatalf("HEALTHCHECK CMD %v, want [%s healthcheck …]", health, entrypoint)
	}
	d, err := time.ParseDuration(img.healthOpts["--timeout"])
	if own := healthcheckTimeout(t); err != nil || d <= own {
		t.Errorf("HEALTHCHECK --timeout=%s, want more than the command's own %v, so that the command reports why", img.healthOpts["--timeout"], own)
	}
	// Asked with the image's ADMIN_ADDR, on a test server's port instead
	// of the image's (here, another process may have that one): in the
	// container the health check asks loopback.
	adminHost, _, err := net.SplitHostPort(cfg.AdminAddr)
	if err != nil {
		t.Fatalf("ADMIN_ADDR=%s: %v", cfg.AdminAddr, err)
	}
	for _, status := range []int{http.StatusOK, http.StatusServiceUnavailable} {
		var asked string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			asked = r.URL.Path
			w.WriteHeader(status)
		}))
		port := strconv.Itoa(portOf(t, strings.TrimPrefix(srv.URL, "http://")))
		runEnv := maps.Clone(withToken)
		runEnv["ADMIN_ADDR"] = net.JoinHostPort(adminHost, port)
		code, stdout, stderr := runHealthcheck(t, runEnv, health[2:]...)
		srv.Close()
		if wantCode := map[int]int{200: 0, 503: 1}[status]; code != wantCode || asked != "/readyz" {
			t.Errorf("HEALTHCHECK against a router answering %d: exit %d (%s), asked %q; want exit %d after asking /readyz", status, code, stderr, asked, wantCode)
		}
		if u := "http://127.0.0.1:" + port + "/readyz"; !strings.Contains(stdout+stderr, u) {
			t.Errorf("in the container the health check does not ask %s (ADMIN_ADDR=%s): %s%s", u, runEnv["ADMIN_ADDR"], stdout, stderr)
		}
	}
}

// healthcheckTimeout is the healthcheck command's default -timeout, as its
// -h says.
func healthcheckTimeout(t *testing.T) time.Duration {
	t.Helper()
	code, stdout, stderr := runHealthcheck(t, nil, "-h")
	m := regexp.MustCompile(`-timeout duration\n[^\n]*\(default ([^)]+)\)`).FindStringSubmatch(stdout + stderr)
	if code != 0 || m == nil {
		t.Fatalf("healthcheck -h: exit %d, no default -timeout in:\n%s%s", code, stdout, stderr)
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatalf("healthcheck -h: -timeout default %q: %v", m[1], err)
	}
	return d
}

// checkVersionFlag checks that the build sets the version the binary
// prints from the VERSION build argument: an -X on a string variable
// version of a package of this module. -X silently ignores a name that
// does not exist, which would build images that say "dev".
func checkVersionFlag(t *testing.T, buildArgs string) {
	t.Helper()
	m := regexp.MustCompile(`-X (\S+)\.version=\$\{VERSION\}`).FindStringSubmatch(buildArgs)
	if m == nil {
		t.Errorf("the build does not set a version variable from the VERSION build argument (-X …version=${VERSION}): %s", buildArgs)
		return
	}
	pkg, mod := m[1], modulePath(t)
	if pkg != mod && !strings.HasPrefix(pkg, mod+"/") {
		t.Errorf("the build's -X names %s.version, outside the module %s", pkg, mod)
		return
	}
	dir := filepath.Join("..", strings.TrimPrefix(strings.TrimPrefix(pkg, mod), "/"))
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if n.Name != "version" {
						continue
					}
					typ, _ := vs.Type.(*ast.Ident)
					var lit *ast.BasicLit
					if i < len(vs.Values) {
						lit, _ = vs.Values[i].(*ast.BasicLit)
					}
					if (typ == nil || typ.Name != "string") && (vs.Type != nil || lit == nil || lit.Kind != token.STRING) {
						t.Errorf("%s: version is not a string variable, which -X needs", fset.Position(n.Pos()))
					}
					return
				}
			}
		}
	}
	t.Errorf("the build's -X names %s.version, which %s does not declare", pkg, dir)
}

// ---------------------------------------------------------------------------
// compose

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]struct{}       `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       string            `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	Expose      []string          `yaml:"expose"`
	Healthcheck *struct {
		Test        []string `yaml:"test"`
		Interval    string   `yaml:"interval"`
		Timeout     string   `yaml:"timeout"`
		StartPeriod string   `yaml:"start_period"`
		Retries     int      `yaml:"retries"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Deploy *struct {
		Replicas *int `yaml:"replicas"`
	} `yaml:"deploy"`
	Scale           *int     `yaml:"scale"`
	StopGracePeriod string   `yaml:"stop_grace_period"`
	Restart         string   `yaml:"restart"`
	ReadOnly        bool     `yaml:"read_only"`
	CapDrop         []string `yaml:"cap_drop"`
	SecurityOpt     []string `yaml:"security_opt"`
}

// composeVar is compose's interpolation: ${NAME}, ${NAME:?message},
// ${NAME:-default}.
var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[?-])([^}]*))?\}`)

// interpolate replaces every ${NAME…} in s with "secret-NAME", as compose
// would with NAME set to that, and reports each use that does not make
// compose refuse to start while NAME is unset (no default passwords).
func interpolate(t *testing.T, where, s string) string {
	t.Helper()
	return composeVar.ReplaceAllStringFunc(s, func(m string) string {
		sub := composeVar.FindStringSubmatch(m)
		if sub[2] != ":?" {
			t.Errorf("%s: %s: use ${%s:?message}, so compose refuses to start without it", where, m, sub[1])
		}
		return "secret-" + sub[1]
	})
}

func TestDeployCompose(t *testing.T) {
	t.Parallel()
	var f composeFile
	decodeStrict(t, composePath, readFile(t, composePath), &f)
	nats, routerSvc := f.Services["nats"], f.Services["router"]
	if routerSvc.Build == "" || nats.Image == "" {
		t.Fatalf("%s: want services nats and router (built from the Dockerfile)", composePath)
	}
	for name, svc := range f.Services {
		for k, v := range svc.Environment {
			svc.Environment[k] = interpolate(t, composePath+": "+name+": "+k, v)
		}
		for _, p := range svc.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s: %s publishes %s beyond the host's loopback", composePath, name, p)
			}
		}
		if svc.Healthcheck == nil || len(svc.Healthcheck.Test) < 2 || svc.Healthcheck.Test[0] != "CMD" {
			t.Errorf("%s: %s has no health check in exec form (CMD …)", composePath, name)
		}
	}

	// One router: per-user order holds within one process only.
	if (routerSvc.Deploy != nil && routerSvc.Deploy.Replicas != nil && *routerSvc.Deploy.Replicas != 1) || (routerSvc.Scale != nil && *routerSvc.Scale != 1) {
		t.Errorf("%s: more than one router replica (README, Per-user order: run one)", composePath)
	}
	for _, dep := range []string{"nats", "postgres"} {
		if routerSvc.DependsOn[dep].Condition != "service_healthy" {
			t.Errorf("%s: the router does not wait for %s to be healthy (it exits when the broker or database is not there at start)", composePath, dep)
		}
	}
	// The router's health check is the image's command.

	// The router's configuration, as the image and this file make it.
	img := readDockerImage(t)
	if hc := routerSvc.Healthcheck; hc == nil || !slices.Equal(hc.Test[1:], img.health) {
		t.Errorf("%s: router health check %v, want the image's %v", composePath, hc, img.health)
	}
	env := maps.Clone(img.env)
	maps.Copy(env, routerSvc.Environment)
	cfg := checkDeployEnv(t, composePath, env, func(name string) bool {
		return strings.Contains(routerSvc.Environment[name], "secret-")
	})
	if grace, err := time.ParseDuration(routerSvc.StopGracePeriod); err != nil || grace <= cfg.CloseTimeout {
		t.Errorf("%s: stop_grace_period %q is not above CLOSE_TIMEOUT (%v): SIGKILL would cut the graceful shutdown", composePath, routerSvc.StopGracePeriod, cfg.CloseTimeout)
	}
	if u, err := url.Parse(cfg.DatabaseURL); err != nil || u.Hostname() != "postgres" {
		t.Errorf("%s: DATABASE_URL %q does not name the postgres service", composePath, cfg.DatabaseURL)
	} else if p, _ := u.User.Password(); p != f.Services["postgres"].Environment["POSTGRES_PASSWORD"] || u.User.Username() != f.Services["postgres"].Environment["POSTGRES_USER"] {
		t.Errorf("%s: DATABASE_URL's user and password are not postgres's", composePath)
	}

	// The nats service runs the least-privilege configuration, and the
	// router gets in with its credentials there.
	if !slices.Contains(nats.Volumes, "../configs/nats/router-least-privilege.conf:/etc/nats/router-least-privilege.conf:ro") {
		t.Errorf("%s: nats does not mount configs/nats/router-least-privilege.conf: %v", composePath, nats.Volumes)
	}
	checkComposeNATS(t, nats, cfg)
}

// checkComposeNATS runs the nats service's configuration in a real
// nats-server — its files as mounted, its $VARIABLES from the service's
// environment, as nats-server resolves them — and connects as the router
// with the router's configuration.
func checkComposeNATS(t *testing.T, nats composeService, cfg configs.Config) {
	t.Helper()
	if len(nats.Command) != 2 || nats.Command[0] != "-c" {
		t.Fatalf("%s: nats command %v, want -c FILE", composePath, nats.Command)
	}
	dir := t.TempDir()
	mountedAt := map[string]string{} // container path → file here
	var volumeTargets []string
	for _, v := range nats.Volumes {
		parts := strings.Split(v, ":")
		volumeTargets = append(volumeTargets, parts[1])
		if strings.HasPrefix(parts[0], ".") {
			mountedAt[parts[1]] = filepath.Join(filepath.Dir(composePath), parts[0])
		}
	}
	// Every variable the files read (an unquoted value `key: $NAME`) must
	// be in the service's environment, where nats-server looks it up.
	varRef := regexp.MustCompile(`(?m)^(\s*[A-Za-z_]+\s*[:=]\s*)\$([A-Za-z_][A-Za-z0-9_]*)\s*$`)
	for target, src := range mountedAt {
		text := string(readFile(t, src))
		text = varRef.ReplaceAllStringFunc(text, func(m string) string {
			sub := varRef.FindStringSubmatch(m)
			v, ok := nats.Environment[sub[2]]
			if !ok {
				t.Errorf("%s reads $%s, which the nats service's environment does not give", src, sub[2])
			}
			return sub[1] + strconv.Quote(v)
		})
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(target)), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(target) != filepath.Dir(nats.Command[1]) {
			t.Fatalf("%s: %s is mounted outside %s, where the configuration's includes look", composePath, target, filepath.Dir(nats.Command[1]))
		}
	}
	conf := filepath.Join(dir, filepath.Base(nats.Command[1]))
	raw, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("%s: nats-server refuses %s: %v", composePath, nats.Command[1], err)
	}
	if !slices.ContainsFunc(volumeTargets, func(v string) bool { return strings.HasPrefix(raw.StoreDir, v+"/") }) {
		t.Errorf("%s: the JetStream store_dir %s is on no volume (%v): the stream would not survive a restart", composePath, raw.StoreDir, volumeTargets)
	}
	if raw.HTTPPort == 0 || raw.HTTPHost != "127.0.0.1" {
		t.Errorf("%s: nats monitoring on %s:%d, want loopback only (it has no authentication)", composePath, raw.HTTPHost, raw.HTTPPort)
	}
	opts := processConf(t, conf)
	opts.HTTPPort = server.RANDOM_PORT
	srv := startConfiguredServer(t, opts)

	// The nats health check's URL, on the port this server got.
	hc := nats.Healthcheck.Test
	u, err := url.Parse(hc[len(hc)-1])
	if err != nil || u.Hostname() != "127.0.0.1" || u.Port() != strconv.Itoa(raw.HTTPPort) {
		t.Fatalf("%s: nats health check %v does not ask the monitoring port %d", composePath, hc, raw.HTTPPort)
	}
	u.Host = srv.MonitorAddr().String()
	if code, body := httpGet(t, u.String()); code != http.StatusOK {
		t.Errorf("nats health check %s: %d %s", u, code, body)
	}

	logger := slog.New(slog.DiscardHandler)
	nc, err := broker.Connect(srv.ClientURL(), cfg, "deploy-test", logger)
	if err != nil {
		t.Fatalf("the router's credentials from %s: %v", composePath, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := broker.EnsureStream(ctx, js, cfg.Stream, logger); err != nil {
		t.Errorf("as the router, with compose's credentials: %v", err)
	}
}

// ---------------------------------------------------------------------------
// Kubernetes

type k8sMeta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type k8sSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

type k8sContainer struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sDeployment struct {
	k8sHead `yaml:",inline"`
	Spec    struct {
		Replicas *int `yaml:"replicas"`
		Strategy struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Selector k8sSelector `yaml:"selector"`
		Template struct {
			Metadata k8sMeta `yaml:"metadata"`
			Spec     struct {
				TerminationGracePeriodSeconds int  `yaml:"terminationGracePeriodSeconds"`
				AutomountServiceAccountToken  bool `yaml:"automountServiceAccountToken"`
				SecurityContext               struct {
					RunAsNonRoot   bool `yaml:"runAsNonRoot"`
					RunAsUser      int  `yaml:"runAsUser"`
					RunAsGroup     int  `yaml:"runAsGroup"`
					SeccompProfile struct {
						Type string `yaml:"type"`
					} `yaml:"seccompProfile"`
				} `yaml:"securityContext"`
				Containers []k8sContainer `yaml:"containers"`
				Volumes    []struct {
					Name     string    `yaml:"name"`
					EmptyDir *struct{} `yaml:"emptyDir"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sService struct {
	k8sHead `yaml:",inline"`
	Spec    struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type k8sPDB struct {
	k8sHead `yaml:",inline"`
	Spec    struct {
		MinAvailable   *int        `yaml:"minAvailable"`
		MaxUnavailable *int        `yaml:"maxUnavailable"`
		Selector       k8sSelector `yaml:"selector"`
	} `yaml:"spec"`
}

type k8sNetworkPolicy struct {
	k8sHead `yaml:",inline"`
	Spec    struct {
		PodSelector k8sSelector `yaml:"podSelector"`
		PolicyTypes []string    `yaml:"policyTypes"`
		Ingress     []struct {
			From []struct {
				PodSelector       *k8sSelector `yaml:"podSelector"`
				NamespaceSelector *k8sSelector `yaml:"namespaceSelector"`
			} `yaml:"from"`
			Ports []struct {
				Port int `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
	} `yaml:"spec"`
}

// k8sHead is what every object starts with.
type k8sHead struct {
	APIVersion string  `yaml:"apiVersion"`
	Kind       string  `yaml:"kind"`
	Metadata   k8sMeta `yaml:"metadata"`
}

// k8sObjects splits the manifest into its documents, by kind (one object
// of each kind, with the API version it has today).
func k8sObjects(t *testing.T, text []byte) map[string][]byte {
	t.Helper()
	wantAPI := map[string]string{
		"Deployment": "apps/v1", "Service": "v1", "PodDisruptionBudget": "policy/v1", "NetworkPolicy": "networking.k8s.io/v1",
	}
	out := map[string][]byte{}
	for _, doc := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(text), -1) {
		var head k8sHead
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("%s: %v", kubernetesPath, err)
		}
		if wantAPI[head.Kind] == "" || head.APIVersion != wantAPI[head.Kind] || head.Metadata.Name == "" {
			t.Errorf("%s: unexpected object %s %s %q", kubernetesPath, head.APIVersion, head.Kind, head.Metadata.Name)
		}
		if _, dup := out[head.Kind]; dup {
			t.Errorf("%s: two objects of kind %s", kubernetesPath, head.Kind)
		}
		out[head.Kind] = []byte(doc)
	}
	for kind := range wantAPI {
		if out[kind] == nil {
			t.Errorf("%s: no %s", kubernetesPath, kind)
		}
	}
	return out
}

// quantityBytes reads a Kubernetes memory quantity (256Mi) or a
// GOMEMLIMIT (200MiB).
func quantityBytes(t *testing.T, q string) int64 {
	t.Helper()
	q = strings.TrimSuffix(q, "B")
	for suffix, mult := range map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 1e3, "M": 1e6, "G": 1e9} {
		if n, ok := strings.CutSuffix(q, suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				t.Fatalf("quantity %q: %v", q, err)
			}
			return v * mult
		}
	}
	v, err := strconv.ParseInt(q, 10, 64)
	if err != nil {
		t.Fatalf("quantity %q: %v", q, err)
	}
	return v
}

func TestDeployKubernetes(t *testing.T) {
	t.Parallel()
	objs := k8sObjects(t, readFile(t, kubernetesPath))
	var (
		dep k8sDeployment
		svc k8sService
		pdb k8sPDB
		np  k8sNetworkPolicy
	)
	decodeStrict(t, kubernetesPath, objs["Deployment"], &dep)
	decodeStrict(t, kubernetesPath, objs["Service"], &svc)
	decodeStrict(t, kubernetesPath, objs["PodDisruptionBudget"], &pdb)
	decodeStrict(t, kubernetesPath, objs["NetworkPolicy"], &np)

	pod := dep.Spec.Template
	selects := func(what string, sel map[string]string) {
		t.Helper()
		if len(sel) == 0 {
			t.Errorf("%s: the %s selects nothing", kubernetesPath, what)
		}
		for k, v := range sel {
			if pod.Metadata.Labels[k] != v {
				t.Errorf("%s: the %s selects %s=%s, which the router's pods do not carry", kubernetesPath, what, k, v)
			}
		}
	}
	selects("Deployment", dep.Spec.Selector.MatchLabels)
	selects("Service", svc.Spec.Selector)
	selects("PodDisruptionBudget", pdb.Spec.Selector.MatchLabels)
	selects("NetworkPolicy", np.Spec.PodSelector.MatchLabels)

	// One replica (README, Per-user order), never two at once in a rollout.
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 {
		t.Errorf("%s: replicas not set to 1 (README, Per-user order: one router)", kubernetesPath)
	}
	if dep.Spec.Strategy.Type != "Recreate" {
		t.Errorf("%s: strategy %q: a rolling update runs two routers at once", kubernetesPath, dep.Spec.Strategy.Type)
	}
	// The disruption budget must not block a node drain forever.
	replicas := 1
	if dep.Spec.Replicas != nil {
		replicas = *dep.Spec.Replicas
	}
	switch b := pdb.Spec; {
	case (b.MinAvailable == nil) == (b.MaxUnavailable == nil):
		t.Errorf("%s: the PodDisruptionBudget needs exactly one of minAvailable and maxUnavailable", kubernetesPath)
	case b.MinAvailable != nil && *b.MinAvailable >= replicas, b.MaxUnavailable != nil && *b.MaxUnavailable < 1:
		t.Errorf("%s: the PodDisruptionBudget allows no eviction of %d replica(s): a node drain would hang", kubernetesPath, replicas)
	}

	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want the router", kubernetesPath, len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	env, fromSecret := maps.Clone(readDockerImage(t).env), map[string]bool{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			// A stand-in of the secret's form: the Secret itself is
			// the operator's.
			env[e.Name], fromSecret[e.Name] = "from-a-secret", true
			if e.Name == "DATABASE_URL" {
				env[e.Name] = "postgres://router:from-a-secret@postgres.db.svc:5432/social"
			}
		case e.ValueFrom != nil:
			t.Errorf("%s: %s comes from neither a value nor a Secret", kubernetesPath, e.Name)
		default:
			env[e.Name] = e.Value
		}
	}
	cfg := checkDeployEnv(t, kubernetesPath, env, func(name string) bool { return fromSecret[name] })
	if !fromSecret["ADMIN_TOKEN"] {
		t.Errorf("%s: ADMIN_TOKEN does not come from a Secret", kubernetesPath)
	}
	if _, ok := env["NATS_URL"]; !ok {
		t.Errorf("%s: no NATS_URL: the pod would run an embedded broker", kubernetesPath)
	}
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["ingress"] != portOf(t, cfg.HTTPAddr) || ports["admin"] != portOf(t, cfg.AdminAddr) {
		t.Errorf("%s: container ports %v, want ingress on HTTP_ADDR's %s and admin on ADMIN_ADDR's %s", kubernetesPath, ports, cfg.HTTPAddr, cfg.AdminAddr)
	}
	if got := pod.Metadata.Annotations["prometheus.io/port"]; got != strconv.Itoa(ports["admin"]) {
		t.Errorf("%s: Prometheus scrapes port %s, the admin port is %d", kubernetesPath, got, ports["admin"])
	}
	for _, sp := range svc.Spec.Ports {
		if ports[sp.TargetPort] == 0 {
			t.Errorf("%s: the Service targets port %q, which the container does not name", kubernetesPath, sp.TargetPort)
		}
	}

	// Probes: readiness is "can take events" (database, not NATS), liveness
	// "the process answers"; both on the admin port, without a token.
	for name, p := range map[string]struct {
		probe *k8sProbe
		path  string
	}{"readinessProbe": {c.ReadinessProbe, "/readyz"}, "livenessProbe": {c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port != "admin" {
			t.Errorf("%s: %s %+v, want GET %s on the admin port", kubernetesPath, name, p.probe, p.path)
		}
	}
	if grace := time.Duration(pod.Spec.TerminationGracePeriodSeconds) * time.Second; grace <= cfg.CloseTimeout {
		t.Errorf("%s: terminationGracePeriodSeconds %v is not above CLOSE_TIMEOUT %v", kubernetesPath, grace, cfg.CloseTimeout)
	}

	// Memory: the documented limit, and the Go runtime told to stay below it.
	limit := c.Resources.Limits["memory"]
	if limit == "" {
		t.Fatalf("%s: no memory limit", kubernetesPath)
	}
	if !strings.Contains(string(readFile(t, "../README.md")), "`"+limit+"`") {
		t.Errorf("README does not document the manifest's memory limit %s", limit)
	}
	if gml, ok := env["GOMEMLIMIT"]; ok && quantityBytes(t, gml) >= quantityBytes(t, limit) {
		t.Errorf("%s: GOMEMLIMIT %s is not below the memory limit %s", kubernetesPath, gml, limit)
	} else if !ok && cfg.MemoryLimit() >= quantityBytes(t, limit)*3/4 {
		// serve's own soft limit, from the manifest's settings, must leave
		// the quarter of the limit the heap's overhead and SQLite or the
		// NATS client take outside it.
		t.Errorf("%s: without GOMEMLIMIT the router's soft limit is %d bytes, not within 3/4 of the memory limit %s", kubernetesPath, cfg.MemoryLimit(), limit)
	}
	if req := c.Resources.Requests["memory"]; req == "" || quantityBytes(t, req) > quantityBytes(t, limit) {
		t.Errorf("%s: memory request %q, want one at most the limit %s", kubernetesPath, req, limit)
	}
	if !c.SecurityContext.ReadOnlyRootFilesystem || !pod.Spec.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: the container must run as non-root on a read-only root filesystem", kubernetesPath)
	}

	// NetworkPolicy: namespaces by the label Kubernetes sets on each, and
	// only the ingress and admin ports open.
	open := map[int]bool{}
	for _, rule := range np.Spec.Ingress {
		for _, from := range rule.From {
			if from.NamespaceSelector != nil {
				for k := range from.NamespaceSelector.MatchLabels {
					if k != "kubernetes.io/metadata.name" {
						t.Errorf("%s: the NetworkPolicy selects namespaces by %q, a label Kubernetes does not set; use kubernetes.io/metadata.name", kubernetesPath, k)
					}
				}
			}
		}
		for _, p := range rule.Ports {
			open[p.Port] = true
		}
	}
	if len(open) != 2 || !open[ports["ingress"]] || !open[ports["admin"]] {
		t.Errorf("%s: the NetworkPolicy opens %v, want the ingress and admin ports", kubernetesPath, open)
	}
}
