package engine

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
)

// failingStore is a shared store whose database is gone: it locks, then every read and write fails.
type failingStore struct{}

var errStoreDown = errors.New("database is down")

func (failingStore) Lock(string) error              { return nil }
func (failingStore) Unlock(string) error            { return nil }
func (failingStore) GetData(string) ([]byte, error) { return nil, errStoreDown }
func (failingStore) SetData(string, []byte) error   { return errStoreDown }

// The upstream bug (gobreaker v2.4.0, distributed_gobreaker.go): when the store fails after the
// lock is taken, NewDistributedCircuitBreaker returns a nil breaker and then calls unlock on it in
// a deferred function. If this test starts failing, gobreaker fixed it; store.BreakerMachine's
// infallible store is still harmless.
func TestGobreakerPanicsOnAFailingStore(t *testing.T) {
	defer func() {
		v := recover()
		re, ok := v.(runtime.Error)
		if !ok || !strings.Contains(re.Error(), "nil pointer dereference") {
			t.Fatalf("recovered %v, want gobreaker's nil pointer dereference", v)
		}
	}()
	_, _ = gobreaker.NewDistributedCircuitBreaker[struct{}](failingStore{}, gobreaker.Settings{Name: "k8s.restart_pod shop"})
	t.Fatal("NewDistributedCircuitBreaker returned: the upstream bug is gone")
}

// The database fails right after the breaker row was locked, where gobreaker's constructor used to
// read and write it: building the machine does not panic, and the failure surfaces as an ordinary
// (transient) error when the state is written back.
func TestBreakerMachineSurvivesTheDatabaseFailingAfterTheLock(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	reg, err := handlers.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{Store: st, Handlers: reg, Rules: &rules.Set{}})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	k := store.BreakerKey{Handler: "k8s.restart_pod", Scope: "shop"}
	data, err := st.BreakerMachineTx(ctx, tx, k, time.Now()) // a new row: no machine yet
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	m, err := e.newMachine(data, k)
	if err != nil {
		t.Fatalf("newMachine: %v", err)
	}
	if _, err := m.Execute(func() (struct{}, error) { return struct{}{}, errOutcomeFailed }); !errors.Is(err, errOutcomeFailed) {
		t.Fatalf("Execute: %v", err)
	}
	err = data.Flush(ctx)
	if err == nil || !store.IsTransient(err) {
		t.Fatalf("Flush on a dead connection: err %v, want a transient error", err)
	}
}
