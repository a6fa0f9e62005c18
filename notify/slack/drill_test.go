package slack

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/slack-go/slack"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

const (
	drillChannel = "#drills"
	drillRun     = "api-down-20261122T030000Z-00ab"
)

// drillAlert is testAlert as a drill sends it.
func drillAlert(name, run string, startsAt time.Time) alert.Alert {
	a := testAlert(name, startsAt)
	a.Labels[alert.DrillLabel] = run
	a.Fingerprint = alert.Fingerprint(a.Labels)
	return a
}

// knownRun records drill run id in the store: a drill incident is one whose label names a run
// the store started.
func knownRun(t *testing.T, st *store.Store, id string) {
	t.Helper()
	if _, err := st.Pool().Exec(context.Background(), `INSERT INTO drill_runs (run_id, name, trigger, actor, rto_seconds, started_at, version)
VALUES ($1, 'drill', 'cli', 'test', 60, now(), 'test')`, id); err != nil {
		t.Fatal(err)
	}
}

// firstPosts returns the chat.postMessage calls of calls that start a message (not thread replies),
// by the pod their text names.
func firstPosts(calls []call) map[string]call {
	out := map[string]call{}
	for _, c := range calls {
		if c.Method == "chat.postMessage" && c.ThreadTS == "" {
			for _, pod := range []string{"api-30", "api-31", "api-32", "api-33"} {
				if strings.Contains(c.Text, "restart-"+pod+":") {
					out[pod] = c
				}
			}
		}
	}
	return out
}

// TestDrillIncidentMessages: a drill incident's message says DRILL with its run id (fallback
// text, header, a context block) and goes to the drills channel, over its rule's own channel; its
// updates and its thread stay there. A normal incident's message is unchanged. A reload of
// slack keeps the drills channel; a reload of drills.page moves the next drill's first message
// only.
func TestDrillIncidentMessages(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.DrillChannel = drillChannel })
	e.s.ruleChan = func(rule string) string {
		if rule == "restart-api-30" {
			return "#payments-incidents" // the drill's message goes to the drills channel all the same
		}
		return ""
	}
	ctx := context.Background()
	now := e.clock.Now()
	knownRun(t, e.st, drillRun)
	drillInc, drillActs := e.incidentOf(ctx, drillAlert("api-30", drillRun, now), 1, now, vocab.StateAwaitingApproval)
	e.incident("api-31", 1, vocab.StateAwaitingApproval)
	// A label naming a run the store never started (copied onto a real alert): no drill.
	e.incidentOf(ctx, drillAlert("api-32", "forged-20261122T030000Z-ffff", now), 1, now, vocab.StateAwaitingApproval)
	if n := e.sync(); n != 3 {
		t.Fatalf("sent %d messages, want 3", n)
	}
	posts := firstPosts(e.rec.Calls())
	drill, normal := posts["api-30"], posts["api-31"]
	if drill.Channel != drillChannel || normal.Channel != testChannel {
		t.Fatalf("drill message to %q, normal message to %q; want %s and %s", drill.Channel, normal.Channel, drillChannel, testChannel)
	}
	if forged := posts["api-32"]; forged.Channel != testChannel || strings.Contains(forged.Text, "DRILL") {
		t.Fatalf("a message of an unknown run's label went to %q (%q); want %s, no DRILL", forged.Channel, forged.Text, testChannel)
	}
	if !strings.HasPrefix(drill.Text, "[DRILL "+drillRun+"] [FIRING] restart-api-30") {
		t.Errorf("drill fallback text = %q", drill.Text)
	}
	for _, want := range []string{`"DRILL · restart-api-30: KubePodCrashLooping"`, "*DRILL* `" + drillRun + "`", "not an outage"} {
		if !strings.Contains(drill.Blocks, want) {
			t.Errorf("drill message lacks %q:\n%s", want, drill.Blocks)
		}
	}
	if strings.Contains(normal.Text+normal.Blocks, "DRILL") || !strings.HasPrefix(normal.Text, "[FIRING] restart-api-31") ||
		!strings.Contains(normal.Blocks, `"restart-api-31: KubePodCrashLooping"`) {
		t.Errorf("normal message changed:\ntext %q\n%s", normal.Text, normal.Blocks)
	}

	// The approval of the drill's action updates its message in the drills channel.
	e.click(approverU1, ButtonApprove, drillActs[0])
	before := len(e.rec.Calls())
	e.sync()
	upd := e.callsSince(before)
	if len(upd) != 1 || upd[0].Method != "chat.update" || upd[0].Channel != drillChannel || upd[0].TS != drill.TS ||
		!strings.Contains(upd[0].Blocks, "*DRILL*") || !strings.Contains(upd[0].Blocks, ": approved") {
		t.Fatalf("calls after the approval = %+v, want one chat.update of the drill message in %s", upd, drillChannel)
	}

	// A reload of slack keeps the drills channel; one of drills.page moves the next drill only.
	e.s.SetConfig(e.s.conf().cfg, false)
	e.incidentOf(ctx, drillAlert("api-32", drillRun, now), 1, now, vocab.StatePlanned)
	e.sync()
	e.s.SetDrillChannel("")
	e.incidentOf(ctx, drillAlert("api-33", drillRun, now), 1, now, vocab.StatePlanned)
	e.sync()
	posts = firstPosts(e.rec.Calls())
	if posts["api-32"].Channel != drillChannel || posts["api-33"].Channel != testChannel || !strings.Contains(posts["api-33"].Blocks, "*DRILL*") {
		t.Errorf("after the reloads: api-32 to %q, api-33 to %q (blocks %s); want %s, then %s still saying DRILL",
			posts["api-32"].Channel, posts["api-33"].Channel, posts["api-33"].Blocks, drillChannel, testChannel)
	}

	// /responder list marks the drill's incidents.
	if got := e.command(approverU1, "list"); !strings.Contains(got, "[DRILL "+drillRun+"] #") || !strings.Contains(got, "• #") {
		t.Errorf("list = %q, want the drill's incidents marked and the others not", got)
	}

	// The drill incident resolves: its message is updated and the notice posted in its thread,
	// in the drills channel although drills.page is gone.
	inc, err := e.st.GetIncident(ctx, drillInc)
	if err != nil {
		t.Fatal(err)
	}
	al := drillAlert("api-30", drillRun, inc.StartsAt)
	at := e.clock.Now().Add(time.Minute)
	if err := e.st.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := e.st.FinishActionsTx(ctx, tx, "", []store.Outcome{{ID: drillActs[0], State: vocab.StateSucceeded, At: at}}); err != nil {
			return err
		}
		_, err := e.st.ResolveIncidentsTx(ctx, tx, []store.ResolveKey{{Fingerprint: al.Fingerprint, StartsAt: al.StartsAt, Alert: al}}, at)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	before = len(e.rec.Calls())
	e.sync()
	res := e.callsSince(before)
	if len(res) != 2 || res[0].Method != "chat.update" || res[0].Channel != drillChannel || res[1].ThreadTS != drill.TS ||
		res[1].Channel != drillChannel || !strings.HasPrefix(res[1].Text, "[DRILL "+drillRun+"] ") {
		t.Fatalf("calls on resolve = %+v, want the update and a DRILL notice in the thread, in %s", res, drillChannel)
	}
}

// TestDrillPage: a page of a drill responder started (the engine's Invocation.Drill) says DRILL
// with the run id; the same label on a page the engine does not know as a drill's (a label copied
// onto a real alert) pages without DRILL; a page of a drill that pages for real says so in its
// incident message.
func TestDrillPage(t *testing.T) {
	e := newEnv(t)
	incID, _ := e.incident("api-34", 1)
	act, err := e.s.PageHandler().Build(handlers.Params{"text": "api-34 did not recover", "channel": drillChannel})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := act.Do(context.Background(), handlers.Invocation{IncidentID: incID, IdempotencyKey: "responder-action-90", Drill: drillRun},
		drillAlert("api-34", drillRun, e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	c := e.rec.Calls()[0]
	if c.Channel != drillChannel || !strings.Contains(c.Text, "<!subteam^S0ONCALL01> :construction: *DRILL* `"+drillRun+"`: api-34 did not recover") {
		t.Errorf("drill page to %s: %q", c.Channel, c.Text)
	}
	forged, err := e.s.PageHandler().Build(handlers.Params{"text": "api-34 is down", "channel": testChannel})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := forged.Do(context.Background(), handlers.Invocation{IncidentID: incID, IdempotencyKey: "responder-action-91"},
		drillAlert("api-34", drillRun, e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	c = e.rec.Calls()[len(e.rec.Calls())-1]
	if c.Channel != testChannel || strings.Contains(c.Text, "DRILL") || !strings.Contains(c.Text, ":rotating_light: api-34 is down") {
		t.Errorf("a page with a drill label the engine does not know went to %s as %q; want %s, no DRILL", c.Channel, c.Text, testChannel)
	}
	realPage := drillAlert("api-35", drillRun, e.clock.Now())
	realPage.Labels[alert.DrillPageLabel] = "real"
	r := renderIncident(store.SlackIncident{Incident: store.Incident{ID: 2, Rule: "r", State: vocab.IncidentFiring, Labels: realPage.Labels,
		Drill: drillRun}, Alert: realPage}, nil)
	if b := blocksText(t, r); !strings.Contains(b, "*DRILL* `"+drillRun+"`") || !strings.Contains(b, "real on-call") {
		t.Errorf("page: real drill message:\n%s", b)
	}
}

// blocksText is the text of r's context blocks.
func blocksText(t *testing.T, r rendered) string {
	t.Helper()
	var b strings.Builder
	for _, bl := range r.Blocks {
		if cb, ok := bl.(*slack.ContextBlock); ok {
			for _, el := range cb.ContextElements.Elements {
				if tx, ok := el.(*slack.TextBlockObject); ok {
					b.WriteString(tx.Text + "\n")
				}
			}
		}
	}
	return b.String()
}
