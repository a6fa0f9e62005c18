// Command responder turns alerts into safe, audited remediation. See README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"

	"github.com/responder-sre/responder/app"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/builtin"
	"github.com/responder-sre/responder/handlers/k8s"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/ruletest"
	"github.com/responder-sre/responder/source/alertmanager"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	version.Version = buildVersion()
	a := kingpin.New("responder", "Turns alerts into safe, audited remediation.").UsageWriter(stderr).ErrorWriter(stderr)
	a.HelpFlag.Short('h')
	a.Terminate(nil)

	serve := a.Command("serve", "Receive alerts, evaluate rules and run actions.")
	configFile := serve.Flag("config.file", "Configuration file.").Default("responder.yml").String()
	listen := serve.Flag("web.listen-address", "Address to listen on for the webhook, API and metrics.").Default(":9095").String()
	webConfig := serve.Flag("web.config.file", "TLS and basic-auth configuration (exporter-toolkit format).").Default("").String()
	storage := serve.Flag("storage.path", "Directory for local state (the embedded JetStream store).").Default("data").String()
	logLevel := serve.Flag("log.level", "Log level: debug, info, warn, error.").Default("info").Enum("debug", "info", "warn", "error")
	logFormat := serve.Flag("log.format", "Log format: logfmt or json.").Default("logfmt").Enum("logfmt", "json")
	dryRun := serve.Flag("dry-run", "Evaluate everything, record dry_run, never act.").Bool()
	noAuth := serve.Flag("web.no-auth", "Serve without webhook and API tokens (development only; loopback listen addresses only).").Bool()
	noAuthAny := serve.Flag("web.no-auth.unsafe-any-address", "Allow --web.no-auth on a listen address that is not loopback.").Bool()
	drain := serve.Flag("shutdown.timeout", "How long shutdown waits for running actions.").Default("30s").Duration()

	rulesCmd := a.Command("rules", "Work with rule files.")
	check := rulesCmd.Command("check", "Compile rule files; print file:line errors; exit 1 on any.")
	checkConfig := check.Flag("config.file", "Configuration file (its rule_files and handler settings are used).").String()
	checkFiles := check.Arg("file", "Rule files to check (in addition to the config's rule_files).").Strings()

	test := rulesCmd.Command("test", "Run promtool-style rule unit tests (*_test.yml) through the engine; exit 1 on any failure.")
	testConfig := test.Flag("config.file", "Configuration file (its handler and safety settings are used).").String()
	testDB := test.Flag("database.url", "PostgreSQL to create throwaway test databases on (needs CREATEDB); default: start a temporary server from the local binaries.").Envar("RESPONDER_DATABASE_URL").String()
	testFiles := test.Arg("file", "Test files.").Required().ExistingFiles()

	send := a.Command("send", "Post Alertmanager webhook payload files to a responder.")
	sendURL := send.Flag("url", "Webhook URL, e.g. http://127.0.0.1:9095/webhook/alertmanager.").Required().String()
	sendToken := send.Flag("bearer-token-file", "File holding the webhook bearer token.").String()
	sendTimeout := send.Flag("timeout", "Timeout per request.").Default("10s").Duration()
	sendFiles := send.Arg("file", "Payload files (Alertmanager v4 JSON).").Required().ExistingFiles()

	rbacCmd := a.Command("rbac", "Print the Kubernetes RBAC (Role and RoleBinding per namespace in handlers.kubernetes.namespaces) the k8s.* handlers need.")
	rbacConfig := rbacCmd.Flag("config.file", "Configuration file (handlers.kubernetes.namespaces).").Default("responder.yml").String()
	rbacClusterRole := rbacCmd.Flag("cluster-role", "Render one ClusterRole bound in each namespace instead of a Role per namespace.").Bool()
	rbacSA := rbacCmd.Flag("service-account", "ServiceAccount responder runs as.").Default("responder").String()
	rbacSANamespace := rbacCmd.Flag("service-account-namespace", "Namespace of that ServiceAccount.").Default("responder").String()
	rbacName := rbacCmd.Flag("name", "Name of the Role (or ClusterRole) and RoleBindings.").Default("responder").String()

	deadLetters := addDeadLettersCmd(a)
	drills := addDrillCmd(a)

	a.Command("version", "Print the version.")

	cmd, err := a.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "responder: %v\n", err)
		return 2
	}
	if code, ok := deadLetters.run(context.Background(), cmd, stdout, stderr); ok {
		return code
	}
	if code, ok := drills.exec(context.Background(), cmd, stdout, stderr); ok {
		return code
	}
	switch cmd {
	case serve.FullCommand():
		logger := newLogger(stderr, *logLevel, *logFormat)
		return runServe(logger, app.Options{ConfigFile: *configFile, ListenAddress: *listen, WebConfigFile: *webConfig,
			StoragePath: *storage, DryRun: *dryRun, NoAuth: *noAuth, NoAuthUnsafeAnyAddress: *noAuthAny, Version: version.Version, DrainTimeout: *drain, Logger: logger})
	case check.FullCommand():
		return runCheck(stdout, stderr, *checkConfig, *checkFiles)
	case test.FullCommand():
		return ruletest.Run(context.Background(), *testFiles, ruletest.Options{Stdout: stdout, Stderr: stderr,
			ConfigFile: *testConfig, DatabaseURL: *testDB, Version: version.Version})
	case rbacCmd.FullCommand():
		return runRBAC(stdout, stderr, *rbacConfig, k8s.RBACOptions{Name: *rbacName, ServiceAccount: *rbacSA,
			ServiceAccountNamespace: *rbacSANamespace, ClusterRole: *rbacClusterRole})
	case send.FullCommand():
		return runSend(stdout, stderr, *sendURL, *sendToken, *sendTimeout, *sendFiles)
	case "version":
		fmt.Fprintln(stdout, version.Print("responder"))
		return 0
	}
	a.Usage(args)
	return 2
}

func buildVersion() string {
	if version.Version != "" {
		return version.Version
	}
	return "dev"
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runServe(logger *slog.Logger, o app.Options) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := app.New(ctx, o)
	if err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "responder listening on %s (webhook POST /webhook/alertmanager, API /api/v1, metrics /metrics)\n", a.Addr())
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go a.ReloadOnSignal(ctx, hup)
	go func() {
		<-ctx.Done()
		stop() // a second SIGINT/SIGTERM during the drain kills the process
	}()
	if err := a.Run(ctx); err != nil {
		logger.Error("stopped", "err", err)
		return 1
	}
	return 0
}

// runCheck compiles the config's rule files and the given files with the configured handlers.
func runCheck(stdout, stderr io.Writer, configFile string, files []string) int {
	cfg := config.Default()
	if configFile != "" {
		var err error
		if cfg, err = config.Load(configFile); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	paths, err := cfg.RuleFilePaths()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	paths = rules.UniqueFiles(append(paths, files...))
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "no rule files: pass files or --config.file with rule_files")
		return 1
	}
	reg, err := registry(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	set, err := rules.LoadFiles(paths, reg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "SUCCESS: %d rules in %d files (rule hash %s)\n", len(set.Rules), len(paths), set.Hash)
	return 0
}

// registry is the handler registry `rules check` validates against: the same handlers as serve,
// configured from the same file, never called.
func registry(cfg *config.Config) (*handlers.Registry, error) {
	return builtin.Registry(handlers.Env{Config: cfg, Version: version.Version})
}

// runRBAC prints the RBAC of the enabled k8s.* handlers, rendered from their Specs.
func runRBAC(stdout, stderr io.Writer, configFile string, o k8s.RBACOptions) int {
	cfg, err := config.Load(configFile)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if !cfg.Handlers.Kubernetes.Enabled() {
		fmt.Fprintln(stderr, "handlers.kubernetes.namespaces is empty: the k8s.* handlers are disabled and need no RBAC")
		return 1
	}
	reg, err := registry(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var specs []handlers.Spec
	for _, name := range reg.Names() {
		h, _ := reg.Get(name)
		if s := h.Spec(); len(s.RBAC) > 0 {
			specs = append(specs, s)
		}
	}
	out, err := k8s.RBAC(specs, cfg.Handlers.Kubernetes.Namespaces, o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	_, _ = stdout.Write(out)
	return 0
}

func runSend(stdout, stderr io.Writer, url, tokenFile string, timeout time.Duration, files []string) int {
	token := ""
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "read token: %v\n", err)
			return 1
		}
		token = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	client := &http.Client{Timeout: timeout}
	failed := false
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", f, err)
			failed = true
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		code, resp, err := alertmanager.Send(ctx, client, url, token, body)
		cancel()
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "%s: %v\n", f, err)
			failed = true
		case code/100 != 2:
			fmt.Fprintf(stderr, "%s: HTTP %d: %s\n", f, code, strings.TrimSpace(string(resp)))
			failed = true
		default:
			fmt.Fprintf(stdout, "%s: HTTP %d: %s\n", f, code, strings.TrimSpace(string(resp)))
		}
	}
	if failed {
		return 1
	}
	return 0
}
