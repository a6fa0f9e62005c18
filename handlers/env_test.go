package handlers_test

import (
	"testing"

	"github.com/responder-sre/responder/handlers"
)

type pager struct{ name string }

type sender interface{ send() string }

func (p *pager) send() string { return p.name }

func TestClientOf(t *testing.T) {
	p := &pager{"p1"}
	env := handlers.Env{Clients: []any{"not a client", p, &pager{"p2"}}}
	if got, ok := handlers.ClientOf[*pager](env); !ok || got != p {
		t.Errorf("ClientOf[*pager] = %v, %v; want the first pager", got, ok)
	}
	if got, ok := handlers.ClientOf[sender](env); !ok || got.send() != "p1" {
		t.Errorf("ClientOf[sender] = %v, %v; want the first pager", got, ok)
	}
	if got, ok := handlers.ClientOf[*int](env); ok || got != nil {
		t.Errorf("ClientOf[*int] = %v, %v; want none", got, ok)
	}
	if _, ok := handlers.ClientOf[*pager](handlers.Env{}); ok {
		t.Error("ClientOf in an env without clients found one")
	}
}
