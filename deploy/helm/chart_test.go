// Package helm_test checks the Helm chart in deploy/helm/responder with the real helm binary
// (built by deploy/helmtest): helm lint --strict, and helm template over several value sets whose
// output is decoded and asserted on. It also runs promtool on the PrometheusRule's tests and diffs
// the chart's RBAC against `responder rbac`.
package helm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/responder-sre/responder/deploy/helmtest"
)

const (
	chartDir  = "deploy/helm/responder"
	release   = "rel"
	namespace = "ops"
	fullname  = "rel-responder"
	dbURL     = "postgres://responder:s3cret-db-password@db.ops.svc:5432/responder"
)

// object is one rendered manifest.
type object struct {
	Kind, Name, Namespace string
	Raw                   map[string]any
}

func (o object) decode(t *testing.T, v any) {
	t.Helper()
	b, err := json.Marshal(o.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s/%s: %v", o.Kind, o.Name, err)
	}
}

type manifests []object

func (m manifests) find(kind, name string) (object, bool) {
	for _, o := range m {
		if o.Kind == kind && o.Name == name {
			return o, true
		}
	}
	return object{}, false
}

func (m manifests) must(t *testing.T, kind, name string) object {
	t.Helper()
	o, ok := m.find(kind, name)
	if !ok {
		t.Fatalf("no %s %q rendered; got %v", kind, name, m.kinds())
	}
	return o
}

func (m manifests) ofKind(kind string) []object {
	var out []object
	for _, o := range m {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (m manifests) kinds() []string {
	var out []string
	for _, o := range m {
		out = append(out, o.Kind+"/"+o.Name)
	}
	return out
}

// parse decodes helm template's multi-document output.
func parse(t *testing.T, out []byte) manifests {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(out))
	var m manifests
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decode helm template output: %v\n%s", err, out)
		}
		if doc == nil {
			continue
		}
		meta, _ := doc["metadata"].(map[string]any)
		o := object{Raw: doc}
		o.Kind, _ = doc["kind"].(string)
		o.Name, _ = meta["name"].(string)
		o.Namespace, _ = meta["namespace"].(string)
		m = append(m, o)
	}
	return m
}

// helm runs the pinned helm binary in the repository root.
func helm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	return helmtest.Run(ctx, helmtest.Binary(t), args...)
}

// render runs helm template on the chart (or dir) with the values files and flags given.
func render(t *testing.T, dir string, args ...string) (manifests, error) {
	t.Helper()
	out, err := helm(t, append([]string{"template", release, dir, "--namespace", namespace}, args...)...)
	if err != nil {
		return nil, err
	}
	return parse(t, out), nil
}

func mustRender(t *testing.T, args ...string) manifests {
	t.Helper()
	m, err := render(t, chartDir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func values(name string) string { return filepath.Join("deploy/helm/testdata", name) }

// valueSets are the values files every chart test renders; monitoring on and off are flags.
var valueSets = []string{"values-db-url.yaml", "values-existing-secret.yaml", "values-ha.yaml", "values-kubernetes.yaml",
	"values-cluster-role.yaml", "values-full.yaml", "values-secrets.yaml", "values-identity.yaml"}

func TestLintStrict(t *testing.T) {
	t.Parallel()
	for _, vs := range valueSets {
		t.Run(vs, func(t *testing.T) {
			t.Parallel()
			out, err := helm(t, "lint", "--strict", chartDir, "--namespace", namespace, "-f", values(vs))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), "0 chart(s) failed") {
				t.Fatalf("helm lint: %s", out)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no database", nil, "a database is required: set database.url"},
		{"replicas without nats.url (schema)", []string{"-f", values("values-db-url.yaml"), "--set", "replicaCount=3"},
			"replicaCount > 1 requires nats.url"},
		{"replicas without nats.url (template, schema skipped)", []string{"-f", values("values-db-url.yaml"), "--set", "replicaCount=3",
			"--skip-schema-validation"}, "replicaCount > 1 requires nats.url"},
		{"unknown value", []string{"-f", values("values-db-url.yaml"), "--set", "replicas=3"}, "additional properties 'replicas' not allowed"},
		{"unknown nested value", []string{"-f", values("values-db-url.yaml"), "--set", "persistence.sise=1Gi"}, "additional properties 'sise' not allowed"},
		{"bad rule file name", []string{"-f", values("values-db-url.yaml"), "--set", "rules.pods=x"}, "pods"},
		{"wildcard namespace", []string{"-f", values("values-db-url.yaml"), "--set", "kubernetes.namespaces={*}"}, "kubernetes/namespaces"},
		{"slack without tokens", []string{"-f", values("values-db-url.yaml"), "--set", "slack.enabled=true"}, "slack.enabled requires slack.botToken"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := render(t, chartDir, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("helm template %v: err = %v, want one containing %q", tc.args, err, tc.want)
			}
		})
	}
	t.Run("replicas with nats.url", func(t *testing.T) {
		m := mustRender(t, "-f", values("values-ha.yaml"))
		var sts appsv1.StatefulSet
		m.must(t, "StatefulSet", fullname).decode(t, &sts)
		if *sts.Spec.Replicas != 3 {
			t.Fatalf("replicas = %d, want 3", *sts.Spec.Replicas)
		}
	})
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	m := mustRender(t, "-f", values("values-db-url.yaml"))
	for _, kind := range []string{"StatefulSet", "Service", "ServiceAccount", "ConfigMap", "Secret", "PodDisruptionBudget"} {
		m.must(t, kind, fullname)
	}
	m.must(t, "Service", fullname+"-headless")
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "Role", "RoleBinding", "ClusterRole"} {
		if got := m.ofKind(kind); len(got) != 0 {
			t.Errorf("%s rendered by default: %v", kind, got)
		}
	}
	for _, o := range m {
		labels := o.Raw["metadata"].(map[string]any)["labels"].(map[string]any)
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
			"app.kubernetes.io/managed-by", "helm.sh/chart"} {
			if labels[k] == nil {
				t.Errorf("%s/%s lacks the label %s", o.Kind, o.Name, k)
			}
		}
		if o.Namespace != namespace {
			t.Errorf("%s/%s in namespace %q, want %q", o.Kind, o.Name, o.Namespace, namespace)
		}
	}

	var sts appsv1.StatefulSet
	m.must(t, "StatefulSet", fullname).decode(t, &sts)
	if *sts.Spec.Replicas != 1 {
		t.Errorf("replicas = %d, want 1", *sts.Spec.Replicas)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Name != "data" {
		t.Errorf("want one volumeClaimTemplate called data (embedded JetStream), got %+v", sts.Spec.VolumeClaimTemplates)
	}
	pod := sts.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("containers = %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	for _, arg := range []string{"serve", "--config.file=/etc/responder/responder.yml", "--storage.path=/var/lib/responder",
		"--web.listen-address=:9095"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %v lack %q", c.Args, arg)
		}
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/livez" {
		t.Errorf("liveness probe = %+v, want GET /livez", c.LivenessProbe)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe = %+v, want GET /readyz", c.ReadinessProbe)
	}
	checkRestricted(t, pod)
	if i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" }); i < 0 ||
		c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.ResourceFieldRef == nil || c.Env[i].ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
		t.Errorf("env %+v: want GOMEMLIMIT from the container's limits.memory", c.Env)
	}
	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm.MountPath
	}
	if mounts["data"] != "/var/lib/responder" || mounts["config"] != "/etc/responder" {
		t.Errorf("volume mounts = %v", mounts)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken = %v without Kubernetes handlers, want false", pod.AutomountServiceAccountToken)
	}

	// Secrets: in the Secret, mounted as files, referenced by *_file keys; never in a ConfigMap.
	cfg := configOf(t, m)
	for path, want := range map[string]string{
		"database.url_file":           "/etc/responder/secrets/database-url",
		"webhook.bearer_token_file":   "/etc/responder/secrets/webhook-token",
		"api.token_file":              "/etc/responder/secrets/api-token",
		"nats.url":                    "",
		"handlers.http.allowed_hosts": "[hooks.internal:8080]",
	} {
		if got := lookup(cfg, path); got != want {
			t.Errorf("responder.yml %s = %q, want %q", path, got, want)
		}
	}
	var sec corev1.Secret
	m.must(t, "Secret", fullname).decode(t, &sec)
	if string(sec.Data["database-url"]) != dbURL {
		t.Errorf("Secret database-url = %q", sec.Data["database-url"])
	}
	for _, k := range []string{"webhook-token", "api-token"} {
		if len(sec.Data[k]) < 32 {
			t.Errorf("Secret %s = %q: want a generated token", k, sec.Data[k])
		}
	}
	noSecretsInConfigMaps(t, m, sec)
	files := projectedFiles(t, pod)
	for _, f := range []string{"responder.yml", "secrets/database-url", "secrets/webhook-token", "secrets/api-token"} {
		if !slices.Contains(files, f) {
			t.Errorf("projected volume lacks %s: %v", f, files)
		}
	}

	var pdb struct {
		Spec struct {
			MaxUnavailable any `json:"maxUnavailable"`
		} `json:"spec"`
	}
	m.must(t, "PodDisruptionBudget", fullname).decode(t, &pdb)
	if fmt.Sprint(pdb.Spec.MaxUnavailable) != "1" {
		t.Errorf("PDB maxUnavailable = %v, want 1 (never blocks draining the single replica)", pdb.Spec.MaxUnavailable)
	}

	dash := m.must(t, "ConfigMap", fullname+"-dashboard")
	if l := dash.Raw["metadata"].(map[string]any)["labels"].(map[string]any); l["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels = %v, want grafana_dashboard: \"1\"", l)
	}
	want, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/grafana/responder.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := dash.Raw["data"].(map[string]any)["responder.json"]; strings.TrimSpace(fmt.Sprint(got)) != strings.TrimSpace(string(want)) {
		t.Errorf("dashboard ConfigMap differs from deploy/grafana/responder.json")
	}
}

// checkRestricted asserts the restricted Pod Security Standard's requirements.
func checkRestricted(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v", psc)
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Fatalf("container %s has no securityContext", c.Name)
		case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot, sc.RunAsUser == nil || *sc.RunAsUser != 65532:
			t.Errorf("container %s: not non-root 65532: %+v", c.Name, sc)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("container %s: root filesystem writable", c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("container %s: privilege escalation allowed", c.Name)
		case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
			t.Errorf("container %s: capabilities = %+v, want drop [ALL]", c.Name, sc.Capabilities)
		case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
			t.Errorf("container %s: seccomp = %+v", c.Name, sc.SeccompProfile)
		}
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %s is a hostPath", v.Name)
		}
	}
}

// projectedFiles lists the paths of the config volume (config map and secret items).
func projectedFiles(t *testing.T, pod corev1.PodSpec) []string {
	t.Helper()
	var files []string
	for _, v := range pod.Volumes {
		if v.Name != "config" || v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.ConfigMap != nil {
				for _, it := range s.ConfigMap.Items {
					files = append(files, it.Path)
				}
			}
			if s.Secret != nil {
				for _, it := range s.Secret.Items {
					files = append(files, it.Path)
				}
			}
		}
	}
	return files
}

func secretRef(t *testing.T, pod corev1.PodSpec) string {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.Secret != nil {
				return s.Secret.Name
			}
		}
	}
	t.Fatal("no secret in the projected config volume")
	return ""
}

// configOf decodes responder.yml from the chart's ConfigMap.
func configOf(t *testing.T, m manifests) map[string]any {
	t.Helper()
	data := m.must(t, "ConfigMap", fullname).Raw["data"].(map[string]any)
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(fmt.Sprint(data["responder.yml"])), &cfg); err != nil {
		t.Fatalf("responder.yml: %v", err)
	}
	return cfg
}

// lookup returns the value at a dotted path, formatted; "<missing>" when absent.
func lookup(cfg map[string]any, path string) string {
	var cur any = cfg
	for _, k := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return "<missing>"
		}
		if cur, ok = mm[k]; !ok {
			return "<missing>"
		}
	}
	return fmt.Sprint(cur)
}

// noSecretsInConfigMaps fails when any secret value appears in a rendered ConfigMap.
func noSecretsInConfigMaps(t *testing.T, m manifests, sec corev1.Secret) {
	t.Helper()
	for _, cm := range m.ofKind("ConfigMap") {
		b, _ := json.Marshal(cm.Raw)
		for k, v := range sec.Data {
			if len(v) > 0 && bytes.Contains(b, v) {
				t.Errorf("ConfigMap %s holds the secret %s", cm.Name, k)
			}
		}
		for k, v := range sec.StringData {
			if v != "" && bytes.Contains(b, []byte(v)) {
				t.Errorf("ConfigMap %s holds the secret %s", cm.Name, k)
			}
		}
	}
}

func TestExistingSecret(t *testing.T) {
	t.Parallel()
	m := mustRender(t, "-f", values("values-existing-secret.yaml"))
	if got := m.ofKind("Secret"); len(got) != 0 {
		t.Fatalf("the chart rendered a Secret with existingSecret: %v", got)
	}
	var sts appsv1.StatefulSet
	m.must(t, "StatefulSet", fullname).decode(t, &sts)
	pod := sts.Spec.Template.Spec
	if got := secretRef(t, pod); got != "responder-secrets" {
		t.Fatalf("secret volume = %q, want the existing secret", got)
	}
	files := projectedFiles(t, pod)
	for _, f := range []string{"secrets/database-url", "secrets/webhook-token", "secrets/api-token", "secrets/api-read-token",
		"secrets/slack-bot-token", "secrets/slack-signing-secret"} {
		if !slices.Contains(files, f) {
			t.Errorf("projected volume lacks %s: %v", f, files)
		}
	}
	// The Secret's keys are the ones secretKeys names.
	for _, v := range pod.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.Secret == nil {
				continue
			}
			for _, it := range s.Secret.Items {
				if it.Path == "secrets/database-url" && it.Key != "pg-url" {
					t.Errorf("database URL key = %q, want pg-url (secretKeys.databaseURL)", it.Key)
				}
			}
		}
	}
	cfg := configOf(t, m)
	for path, want := range map[string]string{
		"api.read_token_file":       "/etc/responder/secrets/api-read-token",
		"slack.bot_token_file":      "/etc/responder/secrets/slack-bot-token",
		"slack.signing_secret_file": "/etc/responder/secrets/slack-signing-secret",
		"slack.channel":             "#incidents",
		"database.url":              "<missing>",
	} {
		if got := lookup(cfg, path); got != want {
			t.Errorf("responder.yml %s = %q, want %q", path, got, want)
		}
	}
}

func TestHAUsesExternalJetStream(t *testing.T) {
	t.Parallel()
	m := mustRender(t, "-f", values("values-ha.yaml"))
	var sts appsv1.StatefulSet
	m.must(t, "StatefulSet", fullname).decode(t, &sts)
	if len(sts.Spec.VolumeClaimTemplates) != 0 {
		t.Errorf("volumeClaimTemplates with an external JetStream: %+v", sts.Spec.VolumeClaimTemplates)
	}
	if got := lookup(configOf(t, m), "nats.url"); got != "nats://nats.nats.svc:4222" {
		t.Errorf("nats.url = %q", got)
	}
}

func TestRuleFilesReachResponderVerbatim(t *testing.T) {
	t.Parallel()
	const literal = "{{ alert.labels.pod }}"
	t.Run("values", func(t *testing.T) {
		m := mustRender(t, "-f", values("values-full.yaml"))
		data := m.must(t, "ConfigMap", fullname).Raw["data"].(map[string]any)
		for _, key := range []string{"rules_pods.yml", "rules_text.yml"} {
			if !strings.Contains(fmt.Sprint(data[key]), literal) {
				t.Errorf("ConfigMap %s lacks the literal %s:\n%s", key, literal, data[key])
			}
		}
		var sts appsv1.StatefulSet
		m.must(t, "StatefulSet", fullname).decode(t, &sts)
		files := projectedFiles(t, sts.Spec.Template.Spec)
		if !slices.Contains(files, "rules/pods.yml") || !slices.Contains(files, "rules/text.yml") {
			t.Errorf("rule files not mounted under rules/: %v", files)
		}
	})
	t.Run("chart rules directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "responder")
		copyDir(t, filepath.Join(repoRoot(t), chartDir), dir)
		rule := "rules:\n  - name: from-file\n    when: alert.name == \"X\"\n    actions:\n      - handler: http.request\n        params: {url: \"http://hooks.internal:8080/{{ alert.labels.pod }}\"}\n"
		if err := os.MkdirAll(filepath.Join(dir, "rules"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "rules", "bundled.yml"), []byte(rule), 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := render(t, dir, "-f", values("values-db-url.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		data := m.must(t, "ConfigMap", fullname).Raw["data"].(map[string]any)
		if got := fmt.Sprint(data["rules_bundled.yml"]); got != rule {
			t.Errorf("rules_bundled.yml = %q, want the file verbatim %q", got, rule)
		}
	})
}

func TestMonitoringNeedsTheOperatorAPI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want bool
	}{
		{"without monitoring.coreos.com/v1", nil, false},
		{"with monitoring.coreos.com/v1", []string{"--api-versions", "monitoring.coreos.com/v1"}, true},
		{"disabled", []string{"--api-versions", "monitoring.coreos.com/v1", "--set", "serviceMonitor.enabled=false",
			"--set", "prometheusRule.enabled=false"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mustRender(t, append([]string{"-f", values("values-db-url.yaml")}, tc.args...)...)
			_, sm := m.find("ServiceMonitor", fullname)
			_, pr := m.find("PrometheusRule", fullname)
			if sm != tc.want || pr != tc.want {
				t.Fatalf("ServiceMonitor rendered %v, PrometheusRule rendered %v; want %v", sm, pr, tc.want)
			}
			if !tc.want {
				return
			}
			// The PrometheusRule is files/prometheus-rules.yml, untemplated.
			b, err := os.ReadFile(filepath.Join(repoRoot(t), chartDir, "files/prometheus-rules.yml"))
			if err != nil {
				t.Fatal(err)
			}
			var want map[string]any
			if err := yaml.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			got := m.must(t, "PrometheusRule", fullname).Raw["spec"]
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("PrometheusRule spec differs from files/prometheus-rules.yml (-file +rendered):\n%s", diff)
			}
			var alerts []string
			for _, g := range want["groups"].([]any) {
				for _, r := range g.(map[string]any)["rules"].([]any) {
					alerts = append(alerts, fmt.Sprint(r.(map[string]any)["alert"]))
				}
			}
			for _, a := range []string{"ResponderDown", "ResponderWebhookErrors", "ResponderActionsFailing", "ResponderApprovalsWaiting",
				"ResponderBreakerOpen", "ResponderDeadLetters", "ResponderDrillFailed", "ResponderDrillOverdue"} {
				if !slices.Contains(alerts, a) {
					t.Errorf("PrometheusRule lacks %s: %v", a, alerts)
				}
			}
			var smon struct {
				Spec struct {
					Endpoints []struct {
						Port, Path  string
						Relabelings []map[string]any
					}
				}
			}
			m.must(t, "ServiceMonitor", fullname).decode(t, &smon)
			if len(smon.Spec.Endpoints) != 1 || smon.Spec.Endpoints[0].Port != "http" || smon.Spec.Endpoints[0].Path != "/metrics" {
				t.Fatalf("ServiceMonitor endpoints = %+v", smon.Spec.Endpoints)
			}
			if !strings.Contains(fmt.Sprint(smon.Spec.Endpoints[0].Relabelings), "replacement:responder") {
				t.Errorf("ServiceMonitor does not set job=responder (the rules select it): %+v", smon.Spec.Endpoints[0].Relabelings)
			}
		})
	}
}

func TestNetworkPolicy(t *testing.T) {
	t.Parallel()
	m := mustRender(t, "-f", values("values-full.yaml"))
	var np struct {
		Spec struct {
			PodSelector struct{ MatchLabels map[string]string }
			PolicyTypes []string
			Ingress     []struct {
				Ports []struct{ Port any }
				From  []map[string]any
			}
		}
	}
	m.must(t, "NetworkPolicy", fullname).decode(t, &np)
	if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/instance"] != release || len(np.Spec.Ingress) != 1 ||
		fmt.Sprint(np.Spec.Ingress[0].Ports[0].Port) != "http" || len(np.Spec.Ingress[0].From) != 1 {
		t.Fatalf("NetworkPolicy = %+v", np.Spec)
	}
}

// TestRBAC: a Role and RoleBinding per watched namespace (or one ClusterRole bound per namespace),
// never a wildcard, never secrets, in every value set.
func TestRBAC(t *testing.T) {
	t.Parallel()
	t.Run("roles per namespace", func(t *testing.T) {
		m := mustRender(t, "-f", values("values-kubernetes.yaml"))
		var nss []string
		for _, r := range m.ofKind("Role") {
			nss = append(nss, r.Namespace)
		}
		if !slices.Equal(nss, []string{"billing", "shop"}) || len(m.ofKind("RoleBinding")) != 2 || len(m.ofKind("ClusterRole")) != 0 {
			t.Fatalf("want a Role and RoleBinding in billing and shop, got %v", m.kinds())
		}
		var rb rbacv1.RoleBinding
		m.ofKind("RoleBinding")[0].decode(t, &rb)
		if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != fullname || len(rb.Subjects) != 1 ||
			rb.Subjects[0].Name != fullname || rb.Subjects[0].Namespace != namespace {
			t.Fatalf("RoleBinding = %+v", rb)
		}
		if got := lookup(configOf(t, m), "handlers.kubernetes.namespaces"); got != "[shop billing]" {
			t.Errorf("handlers.kubernetes.namespaces = %s", got)
		}
		var sts appsv1.StatefulSet
		m.must(t, "StatefulSet", fullname).decode(t, &sts)
		if a := sts.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || !*a {
			t.Errorf("automountServiceAccountToken = %v with Kubernetes handlers, want true", a)
		}
	})
	t.Run("cluster role when asked", func(t *testing.T) {
		m := mustRender(t, "-f", values("values-cluster-role.yaml"))
		if len(m.ofKind("ClusterRole")) != 1 || len(m.ofKind("Role")) != 0 || len(m.ofKind("RoleBinding")) != 2 ||
			len(m.ofKind("ClusterRoleBinding")) != 0 {
			t.Fatalf("want one ClusterRole bound by two RoleBindings, got %v", m.kinds())
		}
	})
	t.Run("no wildcards, no secrets", func(t *testing.T) {
		seen := 0
		for _, vs := range valueSets {
			m := mustRender(t, "-f", values(vs), "--api-versions", "monitoring.coreos.com/v1")
			for _, o := range append(m.ofKind("Role"), m.ofKind("ClusterRole")...) {
				var r rbacv1.ClusterRole
				o.decode(t, &r)
				if len(r.Rules) == 0 {
					t.Errorf("%s: %s %s has no rules", vs, o.Kind, o.Name)
				}
				for _, rule := range r.Rules {
					seen++
					for _, s := range slices.Concat(rule.APIGroups, rule.Resources, rule.Verbs, rule.ResourceNames, rule.NonResourceURLs) {
						if strings.Contains(s, "*") {
							t.Errorf("%s: %s %s has a wildcard: %+v", vs, o.Kind, o.Name, rule)
						}
					}
					for _, res := range rule.Resources {
						if res == "secrets" || strings.HasPrefix(res, "secrets/") {
							t.Errorf("%s: %s %s grants access to secrets: %+v", vs, o.Kind, o.Name, rule)
						}
					}
				}
			}
		}
		if seen == 0 {
			t.Fatal("no RBAC rule rendered by any value set")
		}
	})
}

// TestRBACMatchesResponderRBAC diffs the chart's RBAC with what `responder rbac` prints for the
// same namespaces, names and service account.
func TestRBACMatchesResponderRBAC(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "responder")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/responder")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/responder: %v\n%s", err, out)
	}
	cfg := filepath.Join(t.TempDir(), "responder.yml")
	if err := os.WriteFile(cfg, []byte("handlers:\n  kubernetes:\n    namespaces: [shop, billing]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		values string
		flags  []string
	}{
		{"values-kubernetes.yaml", nil},
		{"values-cluster-role.yaml", []string{"--cluster-role"}},
	} {
		t.Run(tc.values, func(t *testing.T) {
			args := append([]string{"rbac", "--config.file=" + cfg, "--name=" + fullname, "--service-account=" + fullname,
				"--service-account-namespace=" + namespace}, tc.flags...)
			cmd := exec.CommandContext(t.Context(), bin, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("responder %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
			}
			want := rbacObjects(t, parse(t, out))
			got := rbacObjects(t, mustRender(t, "-f", values(tc.values)))
			if len(want) == 0 {
				t.Fatalf("responder rbac printed no RBAC object:\n%s", out)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("chart RBAC differs from `responder rbac` (-responder +chart):\n%s", diff)
			}
		})
	}
}

// rbacObject is the part of an RBAC object both renderings must agree on (labels differ).
type rbacObject struct {
	Kind, Name, Namespace string
	Rules                 []rbacv1.PolicyRule
	Subjects              []rbacv1.Subject
	RoleRef               rbacv1.RoleRef
}

func rbacObjects(t *testing.T, m manifests) []rbacObject {
	t.Helper()
	var out []rbacObject
	for _, o := range m {
		switch o.Kind {
		case "Role", "ClusterRole", "RoleBinding":
		default:
			continue
		}
		var v struct {
			Rules    []rbacv1.PolicyRule `json:"rules"`
			Subjects []rbacv1.Subject    `json:"subjects"`
			RoleRef  rbacv1.RoleRef      `json:"roleRef"`
		}
		o.decode(t, &v)
		out = append(out, rbacObject{o.Kind, o.Name, o.Namespace, v.Rules, v.Subjects, v.RoleRef})
	}
	slices.SortFunc(out, func(a, b rbacObject) int {
		return strings.Compare(a.Kind+"/"+a.Namespace+"/"+a.Name, b.Kind+"/"+b.Namespace+"/"+b.Name)
	})
	return out
}

// TestNotes renders NOTES.txt (helm template skips it, so a copy of the chart wraps it in a
// ConfigMap) and checks the Alertmanager receiver snippet.
func TestNotes(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "responder")
	copyDir(t, filepath.Join(repoRoot(t), chartDir), dir)
	notes, err := os.ReadFile(filepath.Join(dir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "templates", "_notes_test.tpl"), []byte(`{{- define "notes-test" }}`+string(notes)+`{{ end }}`), 0o644))
	must(os.WriteFile(filepath.Join(dir, "templates", "notes-test.yaml"), []byte(
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes-test}\ndata:\n  notes: {{ include \"notes-test\" . | quote }}\n"), 0o644))
	m, err := render(t, dir, "-f", values("values-kubernetes.yaml"), "--show-only", "templates/notes-test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprint(m.must(t, "ConfigMap", "notes-test").Raw["data"].(map[string]any)["notes"])
	for _, want := range []string{
		"url: http://" + fullname + "." + namespace + ".svc:9095/webhook/alertmanager",
		"type: Bearer",
		"credentials_file: /etc/alertmanager/secrets/" + fullname + "/webhook-token",
		"send_resolved: true",
		"may act in: shop, billing",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("NOTES lack %q:\n%s", want, text)
		}
	}
	// The snippet is valid YAML for an Alertmanager receiver.
	start := strings.Index(text, "    receivers:")
	end := strings.Index(text, "   The bearer token")
	if start < 0 || end < start {
		t.Fatalf("no receiver snippet in NOTES:\n%s", text)
	}
	var snippet struct {
		Receivers []struct {
			Name           string
			WebhookConfigs []map[string]any `yaml:"webhook_configs"`
		}
	}
	if err := yaml.Unmarshal([]byte(text[start:end]), &snippet); err != nil || len(snippet.Receivers) != 1 || len(snippet.Receivers[0].WebhookConfigs) != 1 {
		t.Fatalf("receiver snippet does not parse (%v):\n%s", err, text[start:end])
	}
}

// TestPrometheusRules runs the PrometheusRule's promtool unit tests.
func TestPrometheusRules(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install it with `apt-get install -y prometheus` (or run scripts/ensure-deps.sh)")
	}
	cmd := exec.CommandContext(t.Context(), promtool, "test", "rules", "prometheus-rules.test.yml")
	cmd.Dir = "testdata"
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	check := exec.CommandContext(t.Context(), promtool, "check", "rules", filepath.Join("responder", "files", "prometheus-rules.yml"))
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestDashboard: valid JSON with a datasource variable that every query uses.
func TestDashboard(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/grafana/responder.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string
		Templating struct{ List []struct{ Name, Type string } }
		Panels     []struct {
			Title, Type string
			Datasource  map[string]any
			Targets     []struct {
				Expr       string
				Datasource map[string]any
			}
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("deploy/grafana/responder.json: %v", err)
	}
	hasDS := slices.ContainsFunc(d.Templating.List, func(v struct{ Name, Type string }) bool {
		return v.Name == "datasource" && v.Type == "datasource"
	})
	if !hasDS || d.UID == "" {
		t.Fatalf("dashboard lacks a uid or the datasource variable: %+v", d.Templating)
	}
	queries := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource["uid"] != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %v, %d targets", p.Title, p.Datasource, len(p.Targets))
		}
		for _, tg := range p.Targets {
			queries++
			if tg.Datasource["uid"] != "${datasource}" || strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: target %+v", p.Title, tg)
			}
		}
	}
	if queries < 10 {
		t.Fatalf("only %d queries", queries)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := helmtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// copyDir copies a chart (following the dashboard's symlink) into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path) // follows symlinks
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestExistingConfigMap(t *testing.T) {
	t.Parallel()
	m := mustRender(t, "-f", values("values-db-url.yaml"), "--set", "existingConfigMap=my-responder-config")
	if _, ok := m.find("ConfigMap", fullname); ok {
		t.Fatal("the chart rendered its ConfigMap with existingConfigMap")
	}
	var sts appsv1.StatefulSet
	m.must(t, "StatefulSet", fullname).decode(t, &sts)
	if _, ok := sts.Spec.Template.Annotations["checksum/config"]; ok {
		t.Error("checksum/config annotation without the chart's ConfigMap")
	}
	found := false
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.ConfigMap != nil && s.ConfigMap.Name == "my-responder-config" && len(s.ConfigMap.Items) == 0 {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("my-responder-config is not mounted whole: %+v", sts.Spec.Template.Spec.Volumes)
	}
	if got := secretRef(t, sts.Spec.Template.Spec); got != fullname {
		t.Errorf("secret = %q, want the chart's", got)
	}
}

// TestDrillsConfig: config.drills reaches responder.yml as written, and responder loads it: the
// scheduled drill and drills.page.
func TestDrillsConfig(t *testing.T) {
	t.Parallel()
	m := mustRender(t, "-f", values("values-full.yaml"))
	c := loadRendered(t, m, nil, nil)
	if c.Drills.Page != "#drills" || len(c.Drills.Scenarios) != 1 || c.Drills.Scenarios[0].Name != "pod-restart" ||
		c.Drills.Scenarios[0].Schedule != "0 3 * * 1" {
		t.Fatalf("drills = %+v", c.Drills)
	}
}
