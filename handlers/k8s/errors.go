package k8s

import (
	"context"
	"errors"
	"fmt"
	"net"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// call names one API request for error messages: the verb and resource RBAC must grant.
type call struct {
	verb      string
	resource  string // "pods", "pods/eviction", "deployments/scale"
	namespace string
	name      string
}

func (c call) String() string {
	return fmt.Sprintf("%s %s %s/%s", c.verb, c.resource, c.namespace, c.name)
}

// apiError maps an API error to a failure reason: 403 names the missing permission
// (client_error), timeouts are timeout, other 4xx client_error, 5xx and connection errors
// server_error.
func apiError(ctx context.Context, c call, err error) error {
	var ne net.Error
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		// The action's own deadline or cancellation: handlers.ReasonOf makes a deadline a timeout.
		return fmt.Errorf("%s: %w (%w)", c, context.Cause(ctx), err)
	case apierrors.IsForbidden(err):
		return &handlers.Error{Reason: vocab.ReasonClientError, Err: fmt.Errorf(
			"%s: forbidden: responder's service account needs %q on %q in namespace %q (see `responder rbac`): %w",
			c, c.verb, c.resource, c.namespace, err)}
	case apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout():
		return &handlers.Error{Reason: vocab.ReasonTimeout, Err: fmt.Errorf("%s: %w", c, err)}
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		if code := status.Status().Code; code >= 400 && code < 500 {
			return &handlers.Error{Reason: vocab.ReasonClientError, Err: fmt.Errorf("%s: %w", c, err)}
		}
	}
	return &handlers.Error{Reason: vocab.ReasonServerError, Err: fmt.Errorf("%s: %w", c, err)}
}

// refuse is a precondition responder will not act against (a standalone pod, a paused
// Deployment, too few healthy replicas): client_error, with the reason spelled out.
func refuse(format string, args ...any) error {
	return handlers.Fail(vocab.ReasonClientError, "refused: "+format, args...)
}
