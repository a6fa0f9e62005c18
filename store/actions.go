package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/vocab"
)

// NewAction is an action to plan. State is usually planned; an action whose params failed to
// render is recorded directly as failed with reason bad_param.
type NewAction struct {
	IncidentID int64
	Phase      vocab.Phase
	Step       int
	Rule       string
	RuleHash   string
	Handler    string
	Target     string
	Scope      string
	Class      vocab.Class
	Mode       vocab.Mode
	Params     map[string]any
	Approval   string
	Timeout    time.Duration
	State      vocab.State
	Reason     vocab.Reason
	Error      string
	At         time.Time
	// Evidence is the handler's description for the approver (handlers.Describer).
	Evidence string
	// Member is the member of the target workload the action touches ("" if none): see
	// handlers.WorkloadMember.
	Member string
	// ApprovalsRequired is how many distinct approvers it needs when awaiting approval (0 means 1).
	ApprovalsRequired int
	// BasisAt is when the evidence the action rests on was current: the alert's receipt, the
	// moment a `for` completed, or the failure that escalated. Staleness is measured from it.
	BasisAt time.Time
	// Chain is set on a chained step (its params read an earlier step's result): see Chain.
	Chain *Chain
}

// Chain is what a chained step needs to render, when it runs, the params that read the results
// of earlier steps of its list.
type Chain struct {
	// Params are the deferred params as written in the rule (templates unrendered).
	Params map[string]any `json:"params"`
	// Steps maps each step id the params read to its step index in the same incident and phase.
	Steps map[string]int `json:"steps"`
}

// Earlier is an earlier step of a claimed chained step's incident and phase, as ClaimRunnableTx
// read it (Claimed.Earlier).
type Earlier struct {
	State  vocab.State    `json:"state"`
	Fields map[string]any `json:"fields"`
}

// InsertActionsTx plans actions; an existing (incident, phase, step) is left alone (a redelivered
// message or a second replica plans nothing twice). It returns the ids of the rows it inserted.
func (s *Store) InsertActionsTx(ctx context.Context, tx pgx.Tx, as []NewAction) ([]int64, error) {
	if len(as) == 0 {
		return nil, nil
	}
	n := len(as)
	inc, steps, timeouts, required := make([]int64, n), make([]int32, n), make([]int64, n), make([]int32, n)
	phases, rules, hashes, handlers, targets, scopes, classes, modes, params, approvals, states, reasons, errs :=
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	ats, bases := make([]time.Time, n), make([]time.Time, n)
	finished, members, chains := make([]*time.Time, n), make([]*string, n), make([]*string, n)
	evidence := make([]string, n)
	for i, a := range as {
		p := a.Params
		if p == nil {
			p = map[string]any{}
		}
		b, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("action params: %w", err)
		}
		inc[i], steps[i], timeouts[i], required[i] = a.IncidentID, int32(a.Step), a.Timeout.Milliseconds(), int32(max(a.ApprovalsRequired, 1))
		phases[i], rules[i], hashes[i], handlers[i], targets[i], scopes[i] = string(a.Phase), a.Rule, a.RuleHash, a.Handler, a.Target, a.Scope
		classes[i], modes[i], params[i], approvals[i], states[i], reasons[i], errs[i] = string(a.Class), string(a.Mode), string(b), a.Approval, string(a.State), string(a.Reason), a.Error
		ats[i], bases[i] = a.At, a.BasisAt
		if bases[i].IsZero() {
			bases[i] = a.At
		}
		if a.State != vocab.StatePlanned && a.State != vocab.StateAwaitingApproval {
			finished[i] = &ats[i]
		}
		if a.Member != "" {
			members[i] = &as[i].Member
		}
		evidence[i] = a.Evidence
		if a.Chain != nil {
			b, err := json.Marshal(a.Chain)
			if err != nil {
				return nil, fmt.Errorf("action chain: %w", err)
			}
			c := string(b)
			chains[i] = &c
		}
	}
	rows, err := tx.Query(ctx, `
INSERT INTO actions (incident_id, phase, step, rule, rule_hash, handler, target, scope, class, mode, params,
                     approval, timeout_ms, state, reason, error, created_at, finished_at, basis_at, approvals_required, member, evidence, version, chain)
SELECT u.inc, u.phase, u.step, u.rule, u.hash, u.handler, u.target, u.scope, u.class, u.mode, u.params::json,
       u.approval, u.timeout, u.state, u.reason, u.err, u.at, u.fin, u.basis, u.required, u.member, u.evidence, $23, u.chain::jsonb
  FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
              $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], $14::text[], $15::text[], $16::text[],
              $17::timestamptz[], $18::timestamptz[], $19::timestamptz[], $20::int[], $21::text[], $22::text[], $24::text[])
       AS u(inc, phase, step, rule, hash, handler, target, scope, class, mode, params, approval, timeout, state, reason, err, at, fin, basis, required, member, evidence, chain)
ON CONFLICT (incident_id, phase, step) DO NOTHING
RETURNING id`,
		inc, phases, steps, rules, hashes, handlers, targets, scopes, classes, modes, params, approvals, timeouts, states, reasons, errs, ats, finished, bases, required, members, evidence, s.version, chains)
	if err != nil {
		return nil, fmt.Errorf("plan actions: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// Claimed is a runnable action locked by ClaimRunnableTx, with what the executor needs of its
// incident.
//
// The action's params and the incident's alert are kept as stored (JSON) and decoded only by the
// callers that need them (DecodeParams, DecodeAlert): most claimed actions are decided, or wait
// for a slot, without either. Action.Params is not filled.
type Claimed struct {
	Action
	IncidentState vocab.IncidentState
	// EvidenceAt is the later of the action's basis and the last time its alert was received.
	EvidenceAt time.Time
	// RawParams is the action's params and RawAlert the incident's latest alert, as stored.
	RawParams, RawAlert []byte
	// RawChain is the action's Chain as stored (nil unless it is a chained step) and RawEarlier,
	// for a chained step only, the earlier steps of its incident and phase: a JSON object of
	// Earlier by step index.
	RawChain, RawEarlier []byte
}

// DecodeChain decodes the chain of a chained step (nil, nil for any other action) and the
// earlier steps of its incident and phase, by step index.
func (c *Claimed) DecodeChain() (*Chain, map[int]Earlier, error) {
	if len(c.RawChain) == 0 {
		return nil, nil, nil
	}
	var ch Chain
	if err := json.Unmarshal(c.RawChain, &ch); err != nil {
		return nil, nil, fmt.Errorf("action %d chain: %w", c.ID, err)
	}
	var earlier map[int]Earlier
	if len(c.RawEarlier) > 0 {
		if err := json.Unmarshal(c.RawEarlier, &earlier); err != nil {
			return nil, nil, fmt.Errorf("action %d earlier steps: %w", c.ID, err)
		}
	}
	return &ch, earlier, nil
}

// DecodeParams decodes the action's params (a new map at each call).
func (c *Claimed) DecodeParams() (map[string]any, error) {
	var p map[string]any
	if len(c.RawParams) == 0 {
		return p, nil
	}
	if err := json.Unmarshal(c.RawParams, &p); err != nil {
		return nil, fmt.Errorf("action %d params: %w", c.ID, err)
	}
	return p, nil
}

// DecodeAlert decodes the incident's latest alert.
func (c *Claimed) DecodeAlert() (alert.Alert, error) {
	a, err := alert.ParseJSON(c.RawAlert)
	if err != nil {
		return alert.Alert{}, fmt.Errorf("incident %d alert: %w", c.IncidentID, err)
	}
	return a, nil
}

const actionCols = `a.id, a.incident_id, a.phase, a.step, a.rule, a.handler, a.target, a.scope, a.class, a.mode, a.params,
       a.approval, a.timeout_ms, a.state, a.reason, a.attempt, a.approved_by, a.owner, a.lease_until, a.created_at,
       a.started_at, a.finished_at, a.basis_at, a.not_before, a.error, a.result, a.evidence, a.version, a.rule_hash,
       a.verify_deadline, a.result_fields, ` + actionDrill

// claimedCols follow actionCols in the queries collectClaimed scans: the incident's state, the
// evidence time, its alert, and for a chained step its chain and the earlier steps of its
// incident and phase (their states and result fields, by step index; read in the claiming
// transaction, from the rows: the results a chained step renders from are the store's).
const claimedCols = `, i.state, greatest(a.basis_at, i.last_seen_at), i.alert, a.chain,
       CASE WHEN a.chain IS NOT NULL THEN
            (SELECT jsonb_object_agg(e.step, jsonb_build_object('state', e.state, 'fields', e.result_fields))
               FROM actions e WHERE e.incident_id = a.incident_id AND e.phase = a.phase AND e.step < a.step) END`

func scanAction(r pgx.Row, a *Action, extra ...any) error {
	return r.Scan(append(actionDest(a, &a.Params), extra...)...)
}

// actionDest is where the columns of actionCols go, the params into params.
func actionDest(a *Action, params any) []any {
	return []any{&a.ID, &a.IncidentID, &a.Phase, &a.Step, &a.Rule, &a.Handler, &a.Target, &a.Scope, &a.Class, &a.Mode, params,
		&a.Approval, &a.TimeoutMS, &a.State, &a.Reason, &a.Attempt, &a.ApprovedBy, &a.Owner, &a.LeaseUntil, &a.CreatedAt,
		&a.StartedAt, &a.FinishedAt, &a.BasisAt, &a.NotBefore, &a.Error, &a.Result, &a.Evidence, &a.Version, &a.RuleHash,
		&a.VerifyDeadline, &a.ResultFields, &a.Drill}
}

// ClaimRunnableTx locks up to limit planned or approved actions whose earlier steps (same incident
// and phase) all succeeded or were dry runs, oldest first, skipping rows other replicas hold and
// actions that must wait for one running on their target: an action waits for a running action of
// its incident on its target (a page's resolve waits for its trigger in flight), and a disruptive
// action also for a running disruptive action of any incident on its target. Notify actions of
// many incidents to one target (a pager's URL) run side by side.
func (s *Store) ClaimRunnableTx(ctx context.Context, tx pgx.Tx, now time.Time, limit int) ([]Claimed, error) {
	rows, err := tx.Query(ctx, `
SELECT `+actionCols+claimedCols+`
  FROM actions a JOIN incidents i ON i.id = a.incident_id
 WHERE a.state IN `+sqlClaimable+`
   AND (a.not_before IS NULL OR a.not_before <= $2)
   AND NOT EXISTS (SELECT 1 FROM actions p
                    WHERE p.incident_id = a.incident_id AND p.phase = a.phase AND p.step < a.step
                      AND p.state NOT IN `+sqlPassed+`)
   -- target_key(...) keeps these on actions_one_running_per_incident_target and
   -- actions_one_running_per_target (a hash: targets may be long).
   AND NOT EXISTS (SELECT 1 FROM actions r
                    WHERE r.incident_id = a.incident_id AND target_key(r.target) = target_key(a.target) AND r.target = a.target
                      AND r.state = `+lit(vocab.StateRunning)+`)
   AND (a.class <> `+lit(vocab.ClassDisruptive)+` OR NOT EXISTS (SELECT 1 FROM actions r
                    WHERE target_key(r.target) = target_key(a.target) AND r.target = a.target
                      AND r.state = `+lit(vocab.StateRunning)+` AND r.class = `+lit(vocab.ClassDisruptive)+`))
 ORDER BY a.id
 LIMIT $1
 FOR UPDATE OF a SKIP LOCKED`, limit, now)
	if err != nil {
		return nil, fmt.Errorf("claim actions: %w", err)
	}
	return collectClaimed(rows)
}

// MarkCheckingTx hides claimed actions from every claim until until, while owner calls their
// handlers' Check or WorkloadSize with no transaction open (no row lock held during a network
// call). ReclaimCheckedTx takes them back.
func (s *Store) MarkCheckingTx(ctx context.Context, tx pgx.Tx, ids []int64, owner string, until time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE actions SET not_before = $2, owner = $3 WHERE id = ANY($1)`, ids, until, owner); err != nil {
		return fmt.Errorf("mark actions for a check: %w", err)
	}
	return nil
}

// ReclaimCheckedTx locks again the actions of ids that MarkCheckingTx marked for owner until
// until and that nobody took meanwhile (the mark lapsed and another executor claimed them), and
// clears the mark: whatever the caller leaves planned is claimable again once it commits.
func (s *Store) ReclaimCheckedTx(ctx context.Context, tx pgx.Tx, ids []int64, owner string, until time.Time) ([]Claimed, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `
WITH x AS (
    SELECT id FROM actions
     WHERE id = ANY($1) AND state IN `+sqlClaimable+` AND not_before = $3 AND owner = $2
     -- Not SKIP LOCKED: another executor's claim may hold these rows for a moment (a row it
     -- locked and then dropped because the mark hid it stays locked until its transaction
     -- ends); skipping them would hide them until the mark lapses.
     ORDER BY id FOR UPDATE
)
UPDATE actions a SET not_before = NULL, owner = ''
  FROM x, incidents i
 WHERE a.id = x.id AND i.id = a.incident_id
RETURNING `+actionCols+claimedCols, ids, owner, until)
	if err != nil {
		return nil, fmt.Errorf("reclaim checked actions: %w", err)
	}
	cs, err := collectClaimed(rows)
	slices.SortFunc(cs, func(a, b Claimed) int { return cmp.Compare(a.ID, b.ID) })
	return cs, err
}

// Outcome is the final (or next) state of an action.
type Outcome struct {
	ID     int64
	State  vocab.State
	Reason vocab.Reason
	Error  string
	Result string
	// Fields are the handler's result fields (handlers.Result.Fields); nil: none.
	Fields map[string]any
	At     time.Time
}

// FinishActionsTx records outcomes. Only an action still in an unfinished state is changed, and a
// running action only by its owner (fencing: an action whose lease another replica expired stays
// unknown). It returns the ids it changed.
func (s *Store) FinishActionsTx(ctx context.Context, tx pgx.Tx, owner string, os []Outcome) ([]int64, error) {
	if len(os) == 0 {
		return nil, nil
	}
	n := len(os)
	ids := make([]int64, n)
	states, reasons, errs, results := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	ats, fields := make([]time.Time, n), make([]*string, n)
	for i, o := range os {
		ids[i], states[i], reasons[i], errs[i], results[i], ats[i] = o.ID, string(o.State), string(o.Reason), o.Error, o.Result, o.At
		if o.Fields != nil {
			b, err := json.Marshal(o.Fields)
			if err != nil {
				return nil, fmt.Errorf("action %d result fields: %w", o.ID, err)
			}
			f := string(b)
			fields[i] = &f
		}
	}
	rows, err := tx.Query(ctx, `
UPDATE actions a
   SET state = u.state, reason = u.reason, error = u.err, result = u.result, finished_at = u.at, lease_until = NULL,
       result_fields = u.fields::jsonb
  FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $8::text[]) AS u(id, state, reason, err, result, at, fields)
 WHERE a.id = u.id
   -- coalesce(...) keeps the planner on the primary key: during a burst the state statistics are
   -- stale and it would otherwise scan every planned row for each batch.
   AND coalesce(a.state IN `+sqlWaiting+` OR (a.state = `+lit(vocab.StateRunning)+` AND a.owner = $7), false)
RETURNING a.id`, ids, states, reasons, errs, results, ats, owner, fields)
	if err != nil {
		return nil, fmt.Errorf("record outcomes: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// StartActionTx marks a claimed action running with owner and lease.
func (s *Store) StartActionTx(ctx context.Context, tx pgx.Tx, id int64, owner string, at, leaseUntil time.Time) error {
	_, err := tx.Exec(ctx, `
UPDATE actions SET state = `+lit(vocab.StateRunning)+`, owner = $2, started_at = $3, lease_until = $4, attempt = attempt + 1
 WHERE id = $1 AND state IN `+sqlClaimable, id, owner, at, leaseUntil)
	if err != nil {
		return fmt.Errorf("start action %d: %w", id, err)
	}
	return nil
}

// CancelLaterStepsTx skips (reason cancelled) the planned steps after step in the same incident and
// phase: a step that did not succeed stops the rest.
func (s *Store) CancelLaterStepsTx(ctx context.Context, tx pgx.Tx, incidentID int64, phase vocab.Phase, step int, at time.Time) error {
	_, err := tx.Exec(ctx, `
UPDATE actions SET state = `+lit(vocab.StateSkipped)+`, reason = `+lit(vocab.ReasonCancelled)+`, finished_at = $4
 WHERE incident_id = $1 AND phase = $2 AND step > $3 AND coalesce(state IN `+sqlWaiting+`, false)`,
		incidentID, phase, step, at)
	return err
}

// CooldownKey is (rule, target).
type CooldownKey struct{ Rule, Target string }

// CooldownsTx returns the cooldowns in force at now for keys.
func (s *Store) CooldownsTx(ctx context.Context, tx pgx.Tx, keys []CooldownKey, now time.Time) (map[CooldownKey]time.Time, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	rs, ts := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		rs[i], ts[i] = k.Rule, k.Target
	}
	rows, err := tx.Query(ctx, `
SELECT c.rule, c.target, c.until FROM cooldowns c
  JOIN unnest($1::text[], $2::text[]) AS u(rule, target) ON c.rule = u.rule AND c.target_key = target_key(u.target)
 WHERE c.until > $3`, rs, ts, now)
	if err != nil {
		return nil, fmt.Errorf("read cooldowns: %w", err)
	}
	out := map[CooldownKey]time.Time{}
	var k CooldownKey
	var until time.Time
	_, err = pgx.ForEachRow(rows, []any{&k.Rule, &k.Target, &until}, func() error {
		out[k] = until
		return nil
	})
	return out, err
}

// SetCooldownTx starts a cooldown for (rule, target) until until.
func (s *Store) SetCooldownTx(ctx context.Context, tx pgx.Tx, k CooldownKey, until time.Time) error {
	_, err := tx.Exec(ctx, `
INSERT INTO cooldowns (rule, target, target_key, until) VALUES ($1, $2, target_key($2), $3)
ON CONFLICT (rule, target_key) DO UPDATE SET until = greatest(cooldowns.until, EXCLUDED.until)`, k.Rule, k.Target, until)
	if err != nil {
		return fmt.Errorf("start cooldown: %w", err)
	}
	return nil
}

// ClaimCooldownTx starts a cooldown for (rule, target) until until unless one is in force at now;
// then it reports false and when that one ends. The upsert takes the row lock: of two transactions
// (replicas, or passes of one) claiming the same key, the second waits for the first and, once it
// committed, sees its cooldown.
func (s *Store) ClaimCooldownTx(ctx context.Context, tx pgx.Tx, k CooldownKey, now, until time.Time) (bool, time.Time, error) {
	var claimed bool
	var end time.Time
	err := tx.QueryRow(ctx, `
WITH claim AS (
    INSERT INTO cooldowns (rule, target, target_key, until) VALUES ($1, $2, target_key($2), $4)
    ON CONFLICT (rule, target_key) DO UPDATE SET until = EXCLUDED.until, target = EXCLUDED.target
     WHERE cooldowns.until <= $3
    RETURNING until
)
SELECT true, until FROM claim
UNION ALL
SELECT false, until FROM cooldowns WHERE rule = $1 AND target_key = target_key($2) AND NOT EXISTS (SELECT 1 FROM claim)`,
		k.Rule, k.Target, now, until).Scan(&claimed, &end)
	if errors.Is(err, pgx.ErrNoRows) {
		// The cooldown that refused the claim was committed after this statement's snapshot.
		return false, time.Time{}, nil
	}
	if err != nil {
		return false, time.Time{}, fmt.Errorf("claim cooldown: %w", err)
	}
	return claimed, end, nil
}

// RenewLeases extends the leases of the running actions owner holds.
func (s *Store) RenewLeases(ctx context.Context, owner string, ids []int64, until time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `UPDATE actions SET lease_until = $3 WHERE id = ANY($1) AND owner = $2 AND state = `+lit(vocab.StateRunning), ids, owner, until)
	return err
}

// ExpireLeasesTx turns running actions into unknown when their lease expired before now (reason
// lease_expired: the replica running them died) or they ran past their timeout plus grace (reason
// timeout: the handler ignores its deadline). They are never re-run blindly. It returns them.
func (s *Store) ExpireLeasesTx(ctx context.Context, tx pgx.Tx, now time.Time, grace time.Duration) ([]Claimed, error) {
	rows, err := tx.Query(ctx, `
WITH x AS (
    SELECT id, lease_until < $1 AS lost FROM actions
     WHERE state = `+lit(vocab.StateRunning)+`
       AND (lease_until < $1 OR started_at + (timeout_ms + $2::bigint) * interval '1 millisecond' < $1)
     ORDER BY id FOR UPDATE SKIP LOCKED
)
UPDATE actions a SET state = `+lit(vocab.StateUnknown)+`, finished_at = $1, lease_until = NULL,
       reason = CASE WHEN x.lost THEN `+lit(vocab.ReasonLeaseExpired)+` ELSE `+lit(vocab.ReasonTimeout)+` END,
       error = CASE WHEN x.lost THEN 'the replica running this action stopped renewing its lease; it may or may not have completed'
                    ELSE 'the handler ran past its timeout; it may or may not have completed' END
  FROM x, incidents i
 WHERE a.id = x.id AND i.id = a.incident_id
RETURNING `+actionCols+claimedCols, now, grace.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("expire leases: %w", err)
	}
	return collectClaimed(rows)
}

// IncidentAlertTx returns an incident's rule and latest alert (for planning escalations).
func (s *Store) IncidentAlertTx(ctx context.Context, tx pgx.Tx, id int64) (string, alert.Alert, error) {
	var rule string
	var a alert.Alert
	var ab []byte
	if err := tx.QueryRow(ctx, `SELECT rule, alert FROM incidents WHERE id = $1`, id).Scan(&rule, &ab); err != nil {
		return "", a, err
	}
	return rule, a, json.Unmarshal(ab, &a)
}

// ExpireApprovalsTx turns actions that waited for approval longer than ttl into expired (reason
// approval_ttl) and returns them.
func (s *Store) ExpireApprovalsTx(ctx context.Context, tx pgx.Tx, now time.Time, ttl time.Duration) ([]Claimed, error) {
	rows, err := tx.Query(ctx, `
WITH x AS (
    SELECT id FROM actions WHERE state = `+lit(vocab.StateAwaitingApproval)+` AND created_at < $2 ORDER BY id FOR UPDATE SKIP LOCKED
)
UPDATE actions a SET state = `+lit(vocab.StateExpired)+`, reason = `+lit(vocab.ReasonApprovalTTL)+`, finished_at = $1,
       error = 'nobody approved the action within approvals.ttl'
  FROM x, incidents i
 WHERE a.id = x.id AND i.id = a.incident_id
RETURNING `+actionCols+claimedCols, now, now.Add(-ttl))
	if err != nil {
		return nil, fmt.Errorf("expire approvals: %w", err)
	}
	return collectClaimed(rows)
}

// collectClaimed scans rows of actionCols followed by the incident's state, the evidence time and
// the alert, leaving the params and the alert undecoded.
func collectClaimed(rows pgx.Rows) ([]Claimed, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Claimed, error) {
		var c Claimed
		err := r.Scan(append(actionDest(&c.Action, &c.RawParams), &c.IncidentState, &c.EvidenceAt, &c.RawAlert, &c.RawChain, &c.RawEarlier)...)
		return c, err
	})
}

// RequeueActionTx puts a running action this replica owns back to planned, to be tried again at
// notBefore (a page the pager could not take yet). It reports false if the action is no longer ours.
func (s *Store) RequeueActionTx(ctx context.Context, tx pgx.Tx, owner string, id int64, notBefore time.Time, reason vocab.Reason, errText string) (bool, error) {
	tag, err := tx.Exec(ctx, `
UPDATE actions SET state = `+lit(vocab.StatePlanned)+`, not_before = $3, reason = $4, error = $5, lease_until = NULL, owner = ''
 WHERE id = $1 AND state = `+lit(vocab.StateRunning)+` AND owner = $2`, id, owner, notBefore, reason, errText)
	if err != nil {
		return false, fmt.Errorf("requeue action %d: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// SucceededActionsTx returns the actions of the given incidents, run by one of handlers, that were
// tried at least once (succeeded, or in flight or failed after a try: the receiver may have them).
func (s *Store) SucceededActionsTx(ctx context.Context, tx pgx.Tx, incidents []int64, handlers []string) ([]Action, error) {
	if len(incidents) == 0 || len(handlers) == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `SELECT `+actionCols+` FROM actions a
 WHERE a.incident_id = ANY($1) AND a.handler = ANY($2) AND a.attempt > 0 AND a.phase <> `+lit(vocab.PhaseResolve)+`
 ORDER BY a.incident_id, a.id`, incidents, handlers)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Action, error) {
		var a Action
		err := scanAction(r, &a)
		return a, err
	})
}

// StormyRulesTx returns, among rules, those whose disruptive actions planned since since touch
// more than limit distinct targets.
func (s *Store) StormyRulesTx(ctx context.Context, tx pgx.Tx, rules []string, since time.Time, limit int) (map[string]int, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, stormyRulesQuery, rules, since, limit)
	if err != nil {
		return nil, fmt.Errorf("storm guard: %w", err)
	}
	out := map[string]int{}
	var rule string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&rule, &n}, func() error { out[rule] = n; return nil })
	return out, err
}

// stormyRulesQuery reads the window through actions_storm_window (TestStormGuardReadsItsIndex).
var stormyRulesQuery = `
SELECT rule, count(DISTINCT target) FROM actions
 WHERE rule = ANY($1) AND phase = ` + lit(vocab.PhaseActions) + ` AND class = ` + lit(vocab.ClassDisruptive) + ` AND created_at > $2
 GROUP BY rule HAVING count(DISTINCT target) > $3`

// WorkloadMembersTx counts the distinct members of target that rule's disruptive actions were
// planned for since since (the storm guard's max_workload_fraction).
func (s *Store) WorkloadMembersTx(ctx context.Context, tx pgx.Tx, rule, target string, since time.Time) (int, error) {
	var n int
	err := tx.QueryRow(ctx, `SELECT count(DISTINCT member) FROM actions
 WHERE rule = $1 AND target_key(target) = target_key($2) AND target = $2 AND member IS NOT NULL AND phase = `+lit(vocab.PhaseActions)+` AND class = `+lit(vocab.ClassDisruptive)+` AND created_at > $3`,
		rule, target, since).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("storm guard: workload members: %w", err)
	}
	return n, nil
}

// stormEscalationTarget is the cooldowns row (per rule) recording a storm's one escalation; no
// action's target looks like it.
const stormEscalationTarget = "storm-escalation"

// ClaimStormEscalationTx reports whether rule's storm has not escalated within window yet and, if
// so, records that it does now. A per-rule advisory lock serialises concurrent executor passes and
// replicas (each sees the others' committed record), and the record is visible to later calls in
// the same transaction: a storm escalates once, however its refusals are spread over transactions.
func (s *Store) ClaimStormEscalationTx(ctx context.Context, tx pgx.Tx, rule string, now time.Time, window time.Duration) (bool, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('storm-escalation/' || $1, 0))`, rule); err != nil {
		return false, fmt.Errorf("storm escalation lock: %w", err)
	}
	k := CooldownKey{Rule: rule, Target: stormEscalationTarget}
	active, err := s.CooldownsTx(ctx, tx, []CooldownKey{k}, now)
	if err != nil {
		return false, err
	}
	if _, ok := active[k]; ok {
		return false, nil
	}
	return true, s.SetCooldownTx(ctx, tx, k, now.Add(window))
}

// ParamsUpdate is the params a chained step rendered when it started (its deferred params
// rendered from the earlier steps' results).
type ParamsUpdate struct {
	ID     int64
	Params map[string]any
}

// SetParamsTx records the params chained steps started with, so the API and the audit show what
// was sent; the chain keeps the params as written (a retry renders again from them, never from
// these).
func (s *Store) SetParamsTx(ctx context.Context, tx pgx.Tx, ups []ParamsUpdate) error {
	if len(ups) == 0 {
		return nil
	}
	ids, params := make([]int64, len(ups)), make([]string, len(ups))
	for i, u := range ups {
		b, err := json.Marshal(u.Params)
		if err != nil {
			return fmt.Errorf("action %d params: %w", u.ID, err)
		}
		ids[i], params[i] = u.ID, string(b)
	}
	_, err := tx.Exec(ctx, `
UPDATE actions a SET params = u.params::json
  FROM unnest($1::bigint[], $2::text[]) AS u(id, params)
 WHERE a.id = u.id`, ids, params)
	if err != nil {
		return fmt.Errorf("record rendered params: %w", err)
	}
	return nil
}
