package page

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime/quotedprintable"
	"net/mail"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
	"github.com/responder-sre/responder/vocab"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestNotificationsShowTheIncident: with the store, the Teams card and the email name the rule
// and list the incident's other actions with their states (a real PostgreSQL).
func TestNotificationsShowTheIncident(t *testing.T) {
	ctx := t.Context()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	incID, ids := insertIncident(t, st)
	self := handlers.Invocation{ActionID: ids[2], IncidentID: incID, IdempotencyKey: "responder-action-3"}

	f := newFakeTeams(t)
	teams, _ := newTeams(t, f, TeamsOptions{Incidents: st})
	if _, err := buildTeams(t, teams, handlers.Params{}).Do(ctx, self, diskAlert()); err != nil {
		t.Fatalf("teams: %v", err)
	}
	_, cards := f.got()
	card := string(cards[0])
	for _, want := range []string{
		`{"title":"Rule","value":"disk-low"}`,
		`{"title":"#` + itoa(ids[0]) + ` k8s.restart_pod","value":"failed (pdb_blocked) · k8s:shop/pod/web-1"}`,
		`{"title":"#` + itoa(ids[1]) + ` http.request (escalate)","value":"succeeded · POST hooks.example.com/x"}`,
	} {
		if !strings.Contains(card, want) {
			t.Errorf("card lacks %s:\n%s", want, indentJSON(t, cards[0]))
		}
	}
	if strings.Contains(card, "#"+itoa(ids[2])+" ") {
		t.Errorf("the card lists itself:\n%s", card)
	}

	m := newMailServer(t, mailServerOptions{})
	o := emailOptions(m)
	o.Incidents = st
	email, _ := newEmail(t, o)
	if _, err := buildEmail(t, email, handlers.Params{}).Do(ctx, self, diskAlert()); err != nil {
		t.Fatalf("email: %v", err)
	}
	recs, _ := m.got()
	msg, err := mail.ReadMessage(bytes.NewReader(recs[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	if s := msg.Header.Get("Subject"); s != "[FIRING] data-disk (incident #"+itoa(incID)+", rule disk-low)" {
		t.Errorf("Subject %q", s)
	}
	body, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	for _, want := range []string{
		"Rule:      disk-low\n",
		"Actions:\n  #" + itoa(ids[0]) + " k8s.restart_pod on k8s:shop/pod/web-1: failed (pdb_blocked)\n  #" + itoa(ids[1]) +
			" http.request (escalate) on POST hooks.example.com/x: succeeded\n",
	} {
		if !strings.Contains(strings.ReplaceAll(string(body), "\r\n", "\n"), want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
}

// insertIncident inserts a firing incident of rule disk-low with three actions: a failed restart,
// a succeeded escalation and a running page (the one under test).
func insertIncident(t *testing.T, st *store.Store) (int64, []int64) {
	t.Helper()
	ctx := context.Background()
	al := diskAlert()
	var incID int64
	var ids []int64
	err := st.InTx(ctx, func(tx pgx.Tx) error {
		res, err := st.UpsertIncidentsTx(ctx, tx, []store.IncidentUpsert{{Rule: "disk-low", RuleHash: "h", Alert: al,
			State: vocab.IncidentFiring, At: testNow}})
		if err != nil {
			return err
		}
		incID = res[0].ID
		na := func(phase vocab.Phase, step int, handler, target string, state vocab.State, reason vocab.Reason) store.NewAction {
			return store.NewAction{IncidentID: incID, Phase: phase, Step: step, Rule: "disk-low", RuleHash: "h", Handler: handler,
				Target: target, Scope: "x", Class: vocab.ClassNotify, Mode: "enforce", Params: map[string]any{}, Approval: "none",
				Timeout: time.Minute, State: state, Reason: reason, At: testNow}
		}
		ids, err = st.InsertActionsTx(ctx, tx, []store.NewAction{
			na(vocab.PhaseActions, 0, "k8s.restart_pod", "k8s:shop/pod/web-1", vocab.StateFailed, vocab.ReasonPDBBlocked),
			na(vocab.PhaseEscalate, 0, "http.request", "POST hooks.example.com/x", vocab.StateSucceeded, ""),
			na(vocab.PhaseEscalate, 1, "page.teams", "teams:127.0.0.1 incident/1", vocab.StateRunning, ""),
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return incID, ids
}

// failingIncidents is an Incidents whose store is down.
type failingIncidents struct{}

func (failingIncidents) ListActions(context.Context, store.ActionFilter) ([]store.Action, string, error) {
	return nil, "", errors.New("connection refused")
}

// TestNotificationWithoutTheStore: a store that cannot be read delays nothing: the card goes out
// without the actions, and the log says why.
func TestNotificationWithoutTheStore(t *testing.T) {
	var logs bytes.Buffer
	f := newFakeTeams(t)
	h, _ := newTeams(t, f, TeamsOptions{Incidents: failingIncidents{}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if _, err := buildTeams(t, h, handlers.Params{}).Do(t.Context(), inv("k", 9), diskAlert()); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if _, cards := f.got(); len(cards) != 1 || strings.Contains(string(cards[0]), `"Actions"`) {
		t.Errorf("cards %s", cards)
	}
	if !strings.Contains(logs.String(), "could not read the incident's actions") {
		t.Errorf("logs: %s", logs.String())
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
