package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"redial/internal/testenv"
)

// buildRedial builds cmd/redial into a temp dir.
func buildRedial(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "redial")
	out, err := exec.Command("go", "build", "-o", bin, "redial/cmd/redial").CombinedOutput()
	if err != nil {
		t.Fatalf("go build redial/cmd/redial: %v\n%s", err, out)
	}
	return bin
}

// dashboardMetrics returns the redial_* names in the dashboard's query
// expressions and variable queries.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		SchemaVersion int `json:"schemaVersion"`
		Panels        []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if dash.SchemaVersion < 36 {
		t.Errorf("grafana-dashboard.json: schemaVersion %d, want a current one (>= 36)", dash.SchemaVersion)
	}
	if !strings.Contains(string(raw), "${DS_PROMETHEUS}") {
		t.Error("grafana-dashboard.json: panels must use the ${DS_PROMETHEUS} datasource input")
	}
	var exprs []string
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	re := regexp.MustCompile(`\bredial_[a-z0-9_]+`)
	seen := map[string]bool{}
	for _, e := range exprs {
		for _, m := range re.FindAllString(e, -1) {
			seen[m] = true
		}
	}
	var names []string
	for m := range seen {
		names = append(names, m)
	}
	sort.Strings(names)
	if len(names) < 10 {
		t.Fatalf("grafana-dashboard.json: only %d redial metrics in its queries: %v", len(names), names)
	}
	return names
}

// family maps a histogram or summary series name to its metric family.
func family(name string, families map[string]bool) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok && families[base] {
			return base
		}
	}
	return name
}

// declaredMetrics returns the redial_* metric names declared in the
// source under internal/.
func declaredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`Name:\s*"(redial_[a-z0-9_]+)"`)
	out := map[string]bool{}
	err := filepath.WalkDir("../internal", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			out[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A running node exports every metric family the Grafana dashboard
// queries. Vectors without a child yet (e.g. calls by disposition before the
// first call) are not exposed by client_golang at all, so those must at
// least be declared in the source; every other family must be on /metrics.
func TestDashboardMetricsExported(t *testing.T) {
	names := dashboardMetrics(t)
	bin := buildRedial(t)
	r := testenv.StartRedis(t)
	// A configured line gives the per-line gauge a child, so it is
	// exported on an idle node.
	line := `{"params":{"group":"g1","uri":"sip:127.0.0.1:5999","enable":true}}`
	if err := r.Client.HSet(context.Background(), "cti_line@default", "l1", line).Err(); err != nil {
		t.Fatal(err)
	}
	sipPort := testenv.FreePort(t)
	httpPort := testenv.FreePort(t)
	rtp := 20000 + (sipPort%50)*200
	cmd := exec.Command(bin, "serve", "--redis", r.URL, "--host", "deploy-test",
		"--sip", fmt.Sprintf("udp:127.0.0.1:%d", sipPort), "--sip-public-ip", "127.0.0.1",
		"--rtp-ports", fmt.Sprintf("%d-%d", rtp, rtp+198), "--http", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--data", t.TempDir(), "--log-level", "warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})

	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	var body string
	testenv.WaitFor(t, 30*time.Second, func() error {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("redial serve exited: %v\n%s", err, logs.String())
		default:
		}
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz: %s", resp.Status)
		}
		resp, err = http.Get(base + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/metrics: %s", resp.Status)
		}
		body = string(b)
		// The cluster gauge is set once the directory has run, the line
		// gauge once the lines were loaded.
		for _, m := range []string{"redial_cluster_nodes", "redial_line_channels_in_use"} {
			if !strings.Contains(body, "# HELP "+m+" ") {
				return fmt.Errorf("/metrics has no %s yet", m)
			}
		}
		return nil
	})

	exported := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && (f[1] == "HELP" || f[1] == "TYPE") {
			exported[f[2]] = true
		}
	}
	declared := declaredMetrics(t)
	var missing, declaredOnly []string
	for _, n := range names {
		fam := family(n, exported)
		switch {
		case exported[fam]:
		case declared[fam]:
			declaredOnly = append(declaredOnly, fam)
		default:
			missing = append(missing, n)
		}
	}
	for _, n := range []string{"process_resident_memory_bytes", "go_goroutines"} {
		if !exported[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Errorf("the dashboard queries metrics that neither a node exports nor the source declares: %v", missing)
	}
	// A family that only shows up after its first sample is fine, but
	// most must be visible on an idle node or this test checks little.
	if len(declaredOnly) > len(names)/2 {
		t.Errorf("%d of %d dashboard metrics are absent from an idle node's /metrics: %v", len(declaredOnly), len(names), declaredOnly)
	}
	t.Logf("dashboard metrics absent until their first sample (declared in source): %v", declaredOnly)
}

func TestPrometheusConfig(t *testing.T) {
	raw, err := os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	for _, want := range []string{"scrape_configs:", "job_name: redial", "metrics_path: /metrics",
		"redial-1:8088", "redial-2:8088", "relabel_configs:", "target_label: node"} {
		if !strings.Contains(s, want) {
			t.Errorf("prometheus.yml lacks %q", want)
		}
	}
	if strings.Contains(s, "\t") {
		t.Error("prometheus.yml contains a tab: YAML indents with spaces")
	}
}

// Every REDIAL_* variable the env example names is a real `redial serve`
// setting.
func TestEnvExampleNamesRealSettings(t *testing.T) {
	bin := buildRedial(t)
	help, _ := exec.Command(bin, "serve", "-h").CombinedOutput()
	raw, err := os.ReadFile("redial.env.example")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^#?(REDIAL_[A-Z0-9_]+)=`)
	vars := re.FindAllStringSubmatch(string(raw), -1)
	if len(vars) < 10 {
		t.Fatalf("redial.env.example names only %d variables", len(vars))
	}
	for _, v := range vars {
		if !strings.Contains(string(help), "[env "+v[1]+"]") {
			t.Errorf("redial.env.example: %s is not a setting of redial serve", v[1])
		}
	}
	for _, must := range []string{"REDIAL_REDIS", "REDIAL_HOST", "REDIAL_DOMAIN", "REDIAL_SIP", "REDIAL_SIP_PUBLIC_IP",
		"REDIAL_RTP_PORTS", "REDIAL_HTTP", "REDIAL_TLS_CERT", "REDIAL_DATA", "REDIAL_NOTIFY_PREFIX", "REDIAL_NOTIFY_FORMAT"} {
		if !regexp.MustCompile(`(?m)^#?` + must + `=`).MatchString(string(raw)) {
			t.Errorf("redial.env.example does not document %s", must)
		}
	}
}

// systemd-analyze verify accepts the unit without a complaint about it.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := testenv.RequireTool(t, "systemd-analyze")
	raw, err := os.ReadFile("redial.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(raw)
	for _, want := range []string{"ExecStart=/usr/local/bin/redial serve", "EnvironmentFile=/etc/redial/redial.env",
		"User=redial", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"ReadWritePaths=/var/lib/redial", "PrivateTmp=yes", "ProtectHome=yes", "LimitNOFILE=",
		"After=network-online.target redis-server.service"} {
		if !strings.Contains(unit, want) {
			t.Errorf("redial.service lacks %q", want)
		}
	}
	// verify checks that ExecStart is executable: point it at this test
	// binary, which exists.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit = strings.Replace(unit, "ExecStart=/usr/local/bin/redial", "ExecStart="+self, 1)
	path := filepath.Join(t.TempDir(), "redial.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Unknown keys and bad values are only warnings (exit 0): fail on any
	// line about our unit; lines about the host's other units are not ours.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "redial.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}
