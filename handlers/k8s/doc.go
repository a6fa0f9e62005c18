// Package k8s implements the Kubernetes remediation handlers k8s.restart_pod, k8s.rollout_restart
// and k8s.scale (class disruptive), on client-go's typed clientset.
//
// Contract, for every handler:
//   - Only namespaces in Options.Namespaces (handlers.kubernetes.namespaces) are touched. Another
//     namespace, an empty or wildcard name ("", "*", "all", anything with '*') or an invalid
//     object name is refused with reason bad_param: at rule load (ValidateStatic) when the param
//     is literal, at Build once rendered.
//   - Check re-reads the object, applies the same refusals as Do and sends Do's write as a
//     server-side dry run (DryRun: All): nothing is changed. The engine calls it for dry runs and
//     shadow rules, and to re-confirm stale alerts.
//   - Refusals of a precondition (a standalone pod, a paused Deployment, too few healthy
//     replicas, bounds) fail with client_error and a message starting "refused:". API errors map
//     to reasons: 403 → client_error naming the verb, resource and namespace the service account
//     lacks; timeouts → timeout; other 4xx → client_error; 5xx and connection errors →
//     server_error.
//   - Every change is recorded as a core/v1 Event on the workload (reason ResponderRestart,
//     ResponderRestartBlocked, ResponderRolloutRestart, ResponderScale) saying what responder did
//     and why (incident id, alert name), labelled responder.io/incident and responder.io/key.
//     Events are best effort: a failure to record one is logged and does not fail the action.
//   - Target is "namespace/Kind/name" of the workload; Scope is the namespace.
//
// k8s.restart_pod evicts through the Eviction API (policy/v1), never deletes. The eviction carries
// a UID precondition, so it only ever removes the pod Do inspected. A 429 (a PodDisruptionBudget
// refuses) is retried in place with exponential backoff for retry_for, then fails with pdb_blocked
// (a Warning Event records it); a 500 "more than one PodDisruptionBudget" fails at once with
// pdb_blocked. A pod no controller owns is refused unless allow_standalone; a pod owned by
// anything but a ReplicaSet (of a Deployment), StatefulSet or DaemonSet is refused. Evicting a
// Ready pod is refused when the workload would keep fewer than min_healthy ready pods (default 1;
// an integer or a percentage of the desired replicas, rounded up); a pod that is not Ready does not
// lower the count, so a crash-looping single replica can be restarted. Idempotent: a pod already
// gone (404 or 409 on the UID), already terminating, or created after the alert started (a new
// incarnation) is not evicted again. Then it verifies: up to verify_timeout (default 2m) the
// workload must again have as many Ready, not terminating pods (the evicted one excluded) as its
// desired replicas, else not_recovered. Target is the owning workload: the action implements
// handlers.Resolver (the engine calls Resolve(ctx) before Target; Target makes no lookup of its
// own and is the pod until Resolve found the workload) and handlers.WorkloadMember (member = pod,
// size = desired replicas).
//
// k8s.rollout_restart sends the strategic-merge patch `kubectl rollout restart` sends (pod
// template annotation kubectl.kubernetes.io/restartedAt, RFC 3339) together with
// responder.io/restart-key on the workload and its resourceVersion (a concurrent change conflicts
// and is re-read). The key is "incident-<id>" (else the engine's idempotency key): a workload
// already carrying it is not patched again, only verified, so there is one restart per incident.
// Paused Deployments and OnDelete update strategies are refused. It verifies like `kubectl
// rollout status` (observed generation, updated, available and ready replicas) up to
// verify_timeout (default 5m), else not_recovered; ProgressDeadlineExceeded is not_recovered at
// once.
//
// k8s.scale sets replicas through the scale subresource (with its resourceVersion: a concurrent
// change is re-read), to replicas or current+delta, refusing a result outside [min, max] and zero
// unless allow_zero. Reaching the target already is success without a write. A delta is applied
// once per idempotency key: the Event records the target, and a second Do with the same key sets
// that target rather than adding the delta again.
//
// RBAC and RBACObjects render the Role (or ClusterRole) and RoleBindings the handlers' Specs
// declare, per allowed namespace: exact verbs and resources, no wildcards, never secrets.
package k8s
