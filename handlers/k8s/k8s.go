package k8s

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/internal/clock"
	"github.com/responder-sre/responder/vocab"
)

// Handler names as written in rule files.
const (
	RestartPodName     = "k8s.restart_pod"
	RolloutRestartName = "k8s.rollout_restart"
	ScaleName          = "k8s.scale"
)

// Defaults for Options and params.
const (
	DefaultPollInterval  = 2 * time.Second
	DefaultBackoff       = 5 * time.Second
	DefaultLookupTimeout = 5 * time.Second
	DefaultRetryFor      = 10 * time.Minute
	// DefaultVerifyTimeout is how long restart_pod waits for the workload to recover.
	DefaultVerifyTimeout = 2 * time.Minute
	// DefaultRolloutVerifyTimeout is how long rollout_restart waits for the rollout: it replaces
	// every pod, which takes longer than replacing one.
	DefaultRolloutVerifyTimeout = 5 * time.Minute
)

const (
	maxBackoff = time.Minute
	// slack is added to a handler's DefaultTimeout beyond its retry and verify windows.
	slack = time.Minute
	// verifyMargin is kept free before the action's deadline to report not_recovered.
	verifyMargin = 2 * time.Second
	// AnnotationRestartedAt is the pod-template annotation kubectl rollout restart sets.
	AnnotationRestartedAt = "kubectl.kubernetes.io/restartedAt"
	// AnnotationRestartKey records, on a workload, the key of the last rollout restart responder
	// made (see k8s.rollout_restart): the same key never patches twice.
	AnnotationRestartKey = "responder.io/restart-key"
	// LabelKey labels the Events responder creates with the action's key (see k8s.scale).
	LabelKey = "responder.io/key"
	// LabelIncident labels the Events responder creates with the incident id.
	LabelIncident = "responder.io/incident"
	// Component is the Events' source component and reporting controller.
	Component = "responder"
)

// Options configure the k8s.* handlers.
type Options struct {
	// Client talks to the API server (required).
	Client kubernetes.Interface
	// Namespaces are the only namespaces the handlers may touch (handlers.kubernetes.namespaces);
	// any other namespace is refused with reason bad_param (and at rule load, when literal).
	Namespaces []string
	// Logger receives one line per API decision (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now); Sleep waits d or until ctx is done (default: a timer).
	// Tests replace both.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// PollInterval is the verify step's polling period (default 2s).
	PollInterval time.Duration
	// Backoff is the first delay before retrying an eviction a PodDisruptionBudget refused
	// (default 5s), doubled on each retry up to a minute.
	Backoff time.Duration
	// LookupTimeout bounds the lookups Target makes when Resolve was not called first (default 5s).
	LookupTimeout time.Duration
	// Instance names this responder in the Events it creates (default: the host name).
	Instance string
}

// base is what the three handlers share.
type base struct {
	client        kubernetes.Interface
	allowed       map[string]bool
	namespaces    []string
	log           *slog.Logger
	now           func() time.Time
	sleep         func(ctx context.Context, d time.Duration) error
	poll          time.Duration
	backoff       time.Duration
	lookupTimeout time.Duration
	instance      string

	mu     sync.Mutex
	owners map[string]workload // "ns/pod" → owning workload, filled by lookups
}

const maxOwners = 10_000

// New returns the three k8s handlers (restart_pod, rollout_restart, scale) sharing o.
func New(o Options) ([]handlers.Handler, error) {
	b, err := newBase(o)
	if err != nil {
		return nil, err
	}
	return []handlers.Handler{&RestartPod{b}, &RolloutRestart{b}, &Scale{b}}, nil
}

// errNotConfigured is the failure of an action whose handler has no Kubernetes client.
var errNotConfigured = handlers.Fail(vocab.ReasonBadParam, "kubernetes is not configured (handlers.kubernetes.namespaces)")

// configured fails when the handlers have no client.
func (b *base) configured() error {
	if b.client == nil {
		return errNotConfigured
	}
	return nil
}

func newBase(o Options) (*base, error) {
	// A nil client builds handlers that validate and build actions (rules check, rules test, a
	// responder without handlers.kubernetes) and fail with bad_param when they would call the API.
	b := &base{
		client:        o.Client,
		allowed:       make(map[string]bool, len(o.Namespaces)),
		log:           o.Logger,
		now:           o.Now,
		sleep:         o.Sleep,
		poll:          cmp.Or(o.PollInterval, DefaultPollInterval),
		backoff:       cmp.Or(o.Backoff, DefaultBackoff),
		lookupTimeout: cmp.Or(o.LookupTimeout, DefaultLookupTimeout),
		instance:      o.Instance,
		owners:        map[string]workload{},
	}
	for _, ns := range o.Namespaces {
		if err := checkNamespaceName(ns); err != nil {
			return nil, fmt.Errorf("k8s handlers: namespaces: %w", err)
		}
		b.allowed[ns] = true
	}
	b.namespaces = slices.Sorted(func(yield func(string) bool) {
		for ns := range b.allowed {
			if !yield(ns) {
				return
			}
		}
	})
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.sleep == nil {
		b.sleep = clock.Sleep
	}
	if b.instance == "" {
		b.instance, _ = os.Hostname()
	}
	return b, nil
}

// NewClient returns a typed clientset and its config for a kubeconfig path; empty means the
// in-cluster service account.
func NewClient(kubeconfig string) (kubernetes.Interface, *rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	cfg.UserAgent = "responder"
	// client-go's defaults (5 qps, burst 10) throttle a storm of lookups; the budgets and the storm
	// guard bound what responder does, not the client.
	cfg.QPS, cfg.Burst = 50, 100
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return c, cfg, nil
}

// wildcards are target names refused outright, besides any name containing '*'.
var wildcards = []string{"", "all", "_all", "-"}

func checkWildcard(param, v string) error {
	if slices.Contains(wildcards, strings.ToLower(strings.TrimSpace(v))) || strings.Contains(v, "*") {
		return fmt.Errorf("param %q: %q is empty or a wildcard; name exactly one object", param, v)
	}
	return nil
}

func checkNamespaceName(ns string) error {
	if err := checkWildcard("namespace", ns); err != nil {
		return err
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return fmt.Errorf("namespace %q: %s", ns, strings.Join(errs, "; "))
	}
	return nil
}

// checkNamespace checks a namespace param: a single valid name in the allowlist.
func (b *base) checkNamespace(ns string) error {
	if err := checkNamespaceName(ns); err != nil {
		return err
	}
	if !b.allowed[ns] {
		if len(b.namespaces) == 0 {
			return fmt.Errorf("namespace %q is not allowed: handlers.kubernetes.namespaces is empty", ns)
		}
		return fmt.Errorf("namespace %q is not allowed (handlers.kubernetes.namespaces: %s)", ns, strings.Join(b.namespaces, ", "))
	}
	return nil
}

// checkObjectName checks the name of a pod or workload param.
func checkObjectName(param, v string) error {
	if err := checkWildcard(param, v); err != nil {
		return err
	}
	if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
		return fmt.Errorf("param %q: %q is not a valid object name: %s", param, v, strings.Join(errs, "; "))
	}
	return nil
}

func (b *base) cacheOwner(ns, pod string, w workload) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.owners) >= maxOwners {
		clear(b.owners)
	}
	b.owners[ns+"/"+pod] = w
}

func (b *base) cachedOwner(ns, pod string) (workload, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w, ok := b.owners[ns+"/"+pod]
	return w, ok
}
