package app

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/store"
)

// Dead letters: messages the bus gave up on (undecodable, or failing permanently) are rows in
// dead_letters. The API lists them and replays them: the stored body is published to the bus again
// under a new message id, then the row records who replayed it and when. A replay that fails again
// comes back as a new dead letter.

// maxReplayIDs bounds one replay request.
const maxReplayIDs = store.MaxLimit

// Results of one dead letter's replay.
const (
	replayDone    = "replayed"
	replayAlready = "already_replayed"
)

type deadLetterMetrics struct {
	replayed prometheus.Counter
	expired  prometheus.Counter
}

// registerDeadLetterMetrics registers the replay and retention counters (responder_dead_letters
// is one of the background gauges of gauges.go).
func (a *App) registerDeadLetterMetrics(ctx context.Context) {
	a.dl = deadLetterMetrics{
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "responder", Name: "dead_letters_replayed_total",
			Help: "Dead letters published to the bus again by a replay."}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "responder", Name: "dead_letters_deleted_unreplayed_total",
			Help: "Dead letters retention deleted that nobody had replayed (each one logged first)."}),
	}
	// responder_dead_letters is read in the background with the other database-backed gauges
	// (gauges.go): a scrape never queries the database.
	a.reg.MustRegister(a.dl.replayed, a.dl.expired)
}

// RecordDeadLetter records a message the bus gave up on (bus.DeadLetterRecorder).
func (p processor) RecordDeadLetter(ctx context.Context, d bus.DeadLetterInfo) error {
	id, err := p.a.st.RecordDeadLetter(ctx, store.DeadLetterInsert{MsgID: d.MsgID, Reason: d.Reason, Data: d.Data,
		Deliveries: d.Deliveries, At: p.a.o.Now()})
	switch {
	case err != nil:
	case strings.HasPrefix(d.Reason, "bad_signature: "):
		p.a.log.Warn("message with a bad signature dead-lettered unread: someone publishes to the bus without the signing key, or a replica runs with another key; a replay would sign it and trust it",
			"dead_letter_id", id, "msg_id", d.MsgID, "reason", d.Reason)
	default:
		p.a.log.Warn("message dead-lettered; replay it with `responder dead-letters replay` once the cause is fixed",
			"dead_letter_id", id, "msg_id", d.MsgID, "deliveries", d.Deliveries, "reason", d.Reason)
	}
	return err
}

func (a *App) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f := store.DeadLetterFilter{Page: p}
	switch r.URL.Query().Get("replayed") {
	case "":
	case "false":
		f.Unreplayed = true
	default:
		writeError(w, http.StatusBadRequest, "replayed may only be false (list the dead letters not replayed yet)")
		return
	}
	items, next, err := a.st.ListDeadLetters(r.Context(), f)
	writeListOf(a, w, items, next, err)
}

// deadLetterBody is one dead letter with its whole body: as text when it is UTF-8, else base64.
type deadLetterBody struct {
	*store.DeadLetter
	Data       string `json:"data,omitempty"`
	DataBase64 string `json:"data_base64,omitempty"`
}

func (a *App) getDeadLetter(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	d, err := a.st.GetDeadLetter(r.Context(), id)
	if err != nil {
		a.apiError(w, err)
		return
	}
	out := deadLetterBody{DeadLetter: d}
	if utf8.Valid(d.Data) {
		out.Data = string(d.Data)
	} else {
		out.DataBase64 = base64.StdEncoding.EncodeToString(d.Data)
	}
	writeJSON(w, http.StatusOK, out)
}

type replayBody struct {
	IDs []int64 `json:"ids"`
	By  string  `json:"by"`
}

// replayResult is what happened to one dead letter.
type replayResult struct {
	ID          int64             `json:"id"`
	Result      string            `json:"result"` // replayed | already_replayed
	ReplayMsgID string            `json:"replay_msg_id"`
	Duplicate   bool              `json:"duplicate"` // the bus already held replay_msg_id: nothing new was stored
	DeadLetter  *store.DeadLetter `json:"dead_letter"`
}

// decodeReplay decodes a replay request's optional body and names who replays: a named token's
// name, or with the shared admin token "api" or "api:<by>". It answers 400 itself and returns
// false on bad input.
func decodeReplay(w http.ResponseWriter, r *http.Request, b *replayBody) (string, bool) {
	if err := decodeOptional(r, b); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	by, named, err := actorOf(r, b.By)
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return "", false
	case named:
		return by, true
	case b.By == "":
		return "api", true
	case !approverName.MatchString(b.By):
		writeError(w, http.StatusBadRequest, "by must be 1 to 64 letters, digits or ._@-")
		return "", false
	}
	return "api:" + b.By, true
}

// postReplayDeadLetters replays the dead letters named in the body, all or none of which must
// exist (404 naming the unknown ones, nothing replayed).
func (a *App) postReplayDeadLetters(w http.ResponseWriter, r *http.Request) {
	var b replayBody
	by, ok := decodeReplay(w, r, &b)
	if !ok {
		return
	}
	ids := slices.Compact(slices.Sorted(slices.Values(b.IDs)))
	if len(ids) == 0 || len(ids) > maxReplayIDs || ids[0] <= 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`body {"ids": [ID, ...]} with 1 to %d positive dead letter ids`, maxReplayIDs))
		return
	}
	dls, missing, err := a.readDeadLetters(r.Context(), ids)
	if err != nil {
		a.apiError(w, err)
		return
	}
	if len(missing) > 0 {
		writeJSON(w, http.StatusNotFound, apiReplayMissing{Error: "no such dead letter: " + joinIDs(missing) + " (nothing replayed)",
			Missing: missing})
		return
	}
	results := []replayResult{}
	for _, d := range dls {
		res, err := a.replay(r.Context(), d, by)
		if err != nil {
			a.log.Warn("dead letter replay failed", "dead_letter_id", d.ID, "err", err)
			writeJSON(w, http.StatusServiceUnavailable, apiReplayed{Error: err.Error(), Items: results})
			return
		}
		results = append(results, res)
	}
	writeJSON(w, http.StatusOK, apiReplayed{Items: results})
}

// postReplayDeadLetter replays one dead letter: 404 unknown, 409 already replayed.
func (a *App) postReplayDeadLetter(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var b replayBody
	by, ok := decodeReplay(w, r, &b)
	if !ok {
		return
	}
	if len(b.IDs) > 0 {
		writeError(w, http.StatusBadRequest, "ids belong in POST /api/v1/dead-letters/replay")
		return
	}
	d, err := a.st.GetDeadLetter(r.Context(), id)
	if err != nil {
		a.apiError(w, err)
		return
	}
	res, err := a.replay(r.Context(), d, by)
	switch {
	case err != nil:
		a.log.Warn("dead letter replay failed", "dead_letter_id", id, "err", err)
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case res.Result == replayAlready:
		writeJSON(w, http.StatusConflict, apiAlreadyReplayed{Error: alreadyReplayed(res.DeadLetter), DeadLetter: res.DeadLetter})
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

func alreadyReplayed(d *store.DeadLetter) string {
	msg := fmt.Sprintf("dead letter %d was already replayed", d.ID)
	if d.ReplayedAt != nil {
		msg += fmt.Sprintf(" at %s by %s", d.ReplayedAt.UTC().Format(time.RFC3339), d.ReplayedBy)
	}
	return msg + "; if it failed again it is a new dead letter: replay that one"
}

// readDeadLetters reads the dead letters of ids, and the ids that do not exist.
func (a *App) readDeadLetters(ctx context.Context, ids []int64) ([]*store.DeadLetter, []int64, error) {
	var dls []*store.DeadLetter
	var missing []int64
	for _, id := range ids {
		d, err := a.st.GetDeadLetter(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			missing = append(missing, id)
		case err != nil:
			return nil, nil, err
		default:
			dls = append(dls, d)
		}
	}
	return dls, missing, nil
}

// replay publishes a dead letter's body again and records the replay. The message id is new (the
// original may still be inside JetStream's duplicate window, which would drop it) but fixed per
// dead letter, so two replays of one dead letter racing store one message; past the window, the
// engine's incident and action keys make a second copy a no-op. The publish comes before the
// row is marked: a replay whose mark fails is repeated safely.
func (a *App) replay(ctx context.Context, d *store.DeadLetter, by string) (replayResult, error) {
	res := replayResult{ID: d.ID, Result: replayAlready, ReplayMsgID: d.ReplayMsgID, DeadLetter: d}
	if d.ReplayedAt != nil {
		return res, nil
	}
	msgID := replayMsgID(d)
	dup, err := a.bus.Republish(ctx, msgID, d.Data)
	if err != nil {
		return res, fmt.Errorf("replay dead letter %d: %w", d.ID, err)
	}
	now := a.o.Now()
	ok, err := a.st.MarkDeadLetterReplayed(ctx, d.ID, by, msgID, now)
	if err != nil {
		return res, fmt.Errorf("dead letter %d was published again as %s but the replay was not recorded (replaying it again is safe): %w", d.ID, msgID, err)
	}
	if !ok { // a concurrent replay recorded it first
		if cur, err := a.st.GetDeadLetter(ctx, d.ID); err == nil {
			res.DeadLetter, res.ReplayMsgID = cur, cur.ReplayMsgID
		}
		return res, nil
	}
	a.dl.replayed.Inc()
	a.log.Info("dead letter replayed", "dead_letter_id", d.ID, "msg_id", d.MsgID, "replay_msg_id", msgID, "by", by, "duplicate", dup)
	d.ReplayedAt, d.ReplayedBy, d.ReplayMsgID = &now, by, msgID
	return replayResult{ID: d.ID, Result: replayDone, ReplayMsgID: msgID, Duplicate: dup, DeadLetter: d}, nil
}

// replayMsgID is the bus message id of a dead letter's replay: the original id (kept for tracing)
// and the dead letter's id.
func replayMsgID(d *store.DeadLetter) string {
	return d.MsgID + "/replay-" + strconv.FormatInt(d.ID, 10)
}

func joinIDs(ids []int64) string {
	s := ""
	for i, id := range ids {
		if i > 0 {
			s += ", "
		}
		s += strconv.FormatInt(id, 10)
	}
	return s
}

// Retain runs one retention pass now (the hourly loop calls it): open incidents nobody heard of
// for safety.retention are abandoned, and old rows deleted; unreplayed dead letters are logged
// (warn, with their ids) before they are deleted, and counted.
func (a *App) Retain(ctx context.Context) error {
	keep := a.conf().Safety.Retention.D()
	if keep <= 0 {
		return nil
	}
	now := a.o.Now()
	rep, err := a.st.Retain(ctx, now.Add(-keep), now, func(ds []store.DeadLetter) {
		var ids []int64 // the first 100; the audit trail has every one (expired_unreplayed)
		for _, d := range ds[:min(len(ds), 100)] {
			ids = append(ids, d.ID)
		}
		a.log.Warn("retention deletes dead letters nobody replayed", "count", len(ds), "ids", ids, "retention", keep.String(),
			"oldest", ds[0].At, "oldest_reason", ds[0].Reason)
	})
	a.dl.expired.Add(float64(len(rep.Expired)))
	if n := len(rep.Abandoned); n > 0 {
		ids := make([]int64, n)
		for i, x := range rep.Abandoned {
			ids[i] = x.ID
		}
		a.log.Warn("retention closed incidents never resolved as abandoned", "count", n, "ids", ids, "retention", keep.String())
	}
	if rep.Deleted > 0 {
		a.log.Info("retention removed old rows", "rows", rep.Deleted)
	}
	return err
}
