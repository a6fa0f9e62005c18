package k8s

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/responder-sre/responder/handlers"
)

// RBACOptions shape what RBAC renders.
type RBACOptions struct {
	// Name names the Role (or ClusterRole) and the RoleBindings (default "responder").
	Name string
	// ServiceAccount and ServiceAccountNamespace name the subject bound (default "responder" in
	// namespace "responder").
	ServiceAccount          string
	ServiceAccountNamespace string
	// ClusterRole renders one ClusterRole holding the rules, bound by a RoleBinding in each
	// namespace (still no cluster-wide grant), instead of a Role per namespace.
	ClusterRole bool
	// Labels go on every object rendered.
	Labels map[string]string
}

// eventsRule is what every handler needs to record its Events.
var eventsRule = handlers.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}}

// RBACRules merges the RBAC of specs (plus creating and patching Events, when any spec needs
// Kubernetes) into sorted rules: one per API group and verb set, exact verbs and resources. A
// wildcard or any access to secrets is an error.
func RBACRules(specs []handlers.Spec) ([]rbacv1.PolicyRule, error) {
	type gr struct{ group, resource string }
	verbs := map[gr]map[string]bool{}
	var errs []error
	add := func(who string, r handlers.PolicyRule) {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				if g == "*" || strings.Contains(res, "*") || res == "" {
					errs = append(errs, fmt.Errorf("%s: wildcard RBAC rule (group %q, resource %q)", who, g, res))
					continue
				}
				if res == "secrets" || strings.HasPrefix(res, "secrets/") {
					errs = append(errs, fmt.Errorf("%s: responder never gets access to secrets (resource %q)", who, res))
					continue
				}
				k := gr{g, res}
				if verbs[k] == nil {
					verbs[k] = map[string]bool{}
				}
				for _, v := range r.Verbs {
					if v == "*" || v == "" {
						errs = append(errs, fmt.Errorf("%s: wildcard verb on %q", who, res))
						continue
					}
					verbs[k][v] = true
				}
			}
		}
	}
	anyRule := false
	for _, s := range specs {
		for _, r := range s.RBAC {
			add(s.Name, r)
			anyRule = true
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if !anyRule {
		return nil, nil
	}
	add("events", eventsRule)
	// One rule per (group, verb set), resources sorted.
	type gv struct{ group, verbs string }
	byGV := map[gv][]string{}
	for k, vs := range verbs {
		key := gv{k.group, strings.Join(slices.Sorted(maps.Keys(vs)), ",")}
		byGV[key] = append(byGV[key], k.resource)
	}
	keys := slices.SortedFunc(maps.Keys(byGV), func(a, b gv) int {
		return cmp.Or(cmp.Compare(a.group, b.group), cmp.Compare(a.verbs, b.verbs))
	})
	rules := make([]rbacv1.PolicyRule, 0, len(keys))
	for _, k := range keys {
		rules = append(rules, rbacv1.PolicyRule{
			APIGroups: []string{k.group},
			Resources: slices.Sorted(slices.Values(byGV[k])),
			Verbs:     strings.Split(k.verbs, ","),
		})
	}
	return rules, nil
}

// RBACObjects returns the Role and RoleBinding (or, with ClusterRole, one ClusterRole and the
// RoleBindings) granting specs' permissions in each namespace, sorted by namespace.
func RBACObjects(specs []handlers.Spec, namespaces []string, o RBACOptions) ([]runtime.Object, error) {
	o.Name = cmp.Or(o.Name, "responder")
	o.ServiceAccount = cmp.Or(o.ServiceAccount, "responder")
	o.ServiceAccountNamespace = cmp.Or(o.ServiceAccountNamespace, "responder")
	rules, err := RBACRules(specs)
	if err != nil {
		return nil, err
	}
	if len(rules) == 0 {
		return nil, errors.New("no enabled handler needs Kubernetes permissions")
	}
	nss := slices.Sorted(slices.Values(namespaces))
	nss = slices.Compact(nss)
	if len(nss) == 0 {
		return nil, errors.New("no namespaces: handlers.kubernetes.namespaces is empty")
	}
	for _, ns := range nss {
		if err := checkNamespaceName(ns); err != nil {
			return nil, err
		}
	}
	meta := func(ns string) metav1.ObjectMeta {
		m := metav1.ObjectMeta{Name: o.Name, Namespace: ns}
		if len(o.Labels) > 0 {
			m.Labels = maps.Clone(o.Labels)
		}
		return m
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: o.ServiceAccount, Namespace: o.ServiceAccountNamespace}}
	var objs []runtime.Object
	roleRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: o.Name}
	if o.ClusterRole {
		roleRef.Kind = "ClusterRole"
		objs = append(objs, &rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: meta(""), Rules: rules,
		})
	}
	for _, ns := range nss {
		if !o.ClusterRole {
			objs = append(objs, &rbacv1.Role{
				TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
				ObjectMeta: meta(ns), Rules: rules,
			})
		}
		objs = append(objs, &rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: meta(ns), Subjects: subject, RoleRef: roleRef,
		})
	}
	return objs, nil
}

// RBAC renders RBACObjects as a multi-document YAML stream, headed by a comment naming the
// handlers it is for: what `responder rbac` prints and the Helm chart's Role is diffed against.
func RBAC(specs []handlers.Spec, namespaces []string, o RBACOptions) ([]byte, error) {
	objs, err := RBACObjects(specs, namespaces, o)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range specs {
		if len(s.RBAC) > 0 {
			names = append(names, s.Name)
		}
	}
	slices.Sort(names)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Kubernetes RBAC for responder's handlers: %s\n", strings.Join(names, ", "))
	for _, obj := range objs {
		y, err := yaml.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("render RBAC: %w", err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes(), nil
}
