package app

import (
	"bytes"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/store"
)

// TestAPIModelFieldOrder: the API models replaced maps, which encoding/json writes with sorted
// keys; declared in that order, the answers stay byte-identical.
func TestAPIModelFieldOrder(t *testing.T) {
	for _, v := range []any{apiStatus{}, apiBudget{}, apiLeader{}, apiReload{}, apiReady{}, apiReloaded{}, apiDecision{},
		apiDecisionConflict{}, apiPause{}, apiBreaker{}, apiReplayMissing{}, apiReplayed{}, apiAlreadyReplayed{}} {
		typ := reflect.TypeOf(v)
		var names []string
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			names = append(names, name)
		}
		if !slices.IsSorted(names) {
			t.Errorf("%s: JSON fields %v, want them sorted", typ.Name(), names)
		}
	}
}

// TestAPIStatusMatchesTheMap: /api/v1/status is byte for byte what the map it replaced gave.
func TestAPIStatusMatchesTheMap(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	until := at.Add(30 * time.Minute)
	ps := store.PauseState{Paused: true, By: "api:alice", Reason: "maintenance", At: at, Until: &until}
	breakers := []store.Breaker{{}}
	typed := apiStatus{
		Paused: true, Pause: ps, ApprovalsPending: 2, DryRun: true, Rules: 3, RuleHash: "abc", Version: "1.2.3",
		BusPending: 7, Breakers: breakers,
		Budgets: []apiBudget{
			{Name: "k8s", Match: "k8s.*", Per: "namespace", Max: 3, Window: "10m0s", MostUsed: 1},
			{Name: "pg", Match: "postgres.*", Per: "cluster", Max: 1, Window: "1h0m0s", Error: "unavailable"},
		},
		Leader:     apiLeader{Replica: "host-1-ab", Leading: true, Token: 42},
		LastReload: apiReload{At: at, Successful: false, Error: "bad rule"},
	}
	old := map[string]any{
		"paused": true, "pause": ps, "approvals_pending": 2, "dry_run": true, "rules": 3, "rule_hash": "abc",
		"version": "1.2.3", "bus_pending": uint64(7), "breakers": breakers,
		"budgets": []map[string]any{
			{"name": "k8s", "match": "k8s.*", "per": "namespace", "max": 3, "window": "10m0s", "most_used": 1},
			{"name": "pg", "match": "postgres.*", "per": "cluster", "max": 1, "window": "1h0m0s", "most_used": 0, "error": "unavailable"},
		},
		"leader":      map[string]any{"replica": "host-1-ab", "leading": true, "token": int64(42)},
		"last_reload": map[string]any{"at": at, "successful": false, "error": "bad rule"},
	}
	got, want := httptest.NewRecorder(), httptest.NewRecorder()
	writeJSON(got, 200, typed)
	writeJSON(want, 200, old)
	if !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
		t.Fatalf("status = %s\nwant %s", got.Body, want.Body)
	}
}
